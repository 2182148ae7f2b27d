"""Tokenize (prompt, completion) pairs the way TRL does, sample completions, and score them.

A completion's log-probability is the sum over its tokens (EOS included) of log pi(token | prefix),
exactly the quantity in the DPO loss (Rafailov et al. 2023, eq. 7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a text with the tokenizer's own special-token rule, as TRL's DPO, KTO, SFT,
    RLOO and reward trainers tokenize (trl.data_utils._tokenize): a Llama-style tokenizer adds
    BOS, GPT-2's and the built-in worlds' add nothing. Every harness measurement tokenizes
    through here, and harness.methods.trainers holds ORPO and CPO to the same rule."""
    return tokenizer(text)["input_ids"]


def tokenize_completion(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids + EOS), split where the two tokenizations diverge, as in TRL.

    EOS is appended as text unless the completion already ends with it, as DPOTrainer does.
    """
    eos = tokenizer.eos_token
    prompt_ids = encode(tokenizer, prompt)
    full_ids = encode(tokenizer, prompt + completion + ("" if completion.endswith(eos) else eos))
    split = 0
    while split < min(len(prompt_ids), len(full_ids)) and prompt_ids[split] == full_ids[split]:
        split += 1
    return full_ids[:split], full_ids[split:]


def context_length(model) -> int | None:
    """How many positions the model can read (GPT-2's n_positions), None if it does not say."""
    return getattr(model.config, "max_position_embeddings", None)


def truncate_pair(
    prompt_ids: list[int], completion_ids: list[int], max_length: int
) -> tuple[list[int], list[int]] | None:
    """(prompt, completion) cut to `max_length` tokens in all, as TRL's DPO collator does
    ("keep_start": the end of the completion goes); None when the prompt alone fills
    `max_length`, the rows TRL drops before training."""
    if len(prompt_ids) >= max_length:
        return None
    return prompt_ids, completion_ids[: max_length - len(prompt_ids)]


def prompt_budget(model, max_new_tokens: int) -> int | None:
    """The most prompt tokens that leave room for `max_new_tokens` in the model's context."""
    context = context_length(model)
    return None if context is None else max(1, context - max_new_tokens)


def _right_padded(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """input_ids, attention_mask and a mask of completion positions, right-padded."""
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    completion_mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        attention[i, : len(p) + len(c)] = 1
        completion_mask[i, len(p) : len(p) + len(c)] = True
    return ids, attention, completion_mask


@torch.no_grad()
def sequence_logps(
    model, prompts: list[list[int]], completions: list[list[int]], pad_id: int, batch_size: int = 64
) -> torch.Tensor:
    """Summed log pi(completion | prompt) per row, shape (n,). Rows are token-id lists."""
    model.eval()
    out = []
    for start in range(0, len(prompts), batch_size):
        ids, attention, mask = _right_padded(
            prompts[start : start + batch_size], completions[start : start + batch_size], pad_id
        )
        ids, attention, mask = (
            ids.to(model.device),
            attention.to(model.device),
            mask.to(model.device),
        )
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        token_logps = torch.gather(logits.log_softmax(-1), 2, ids[:, 1:, None]).squeeze(2)
        out.append((token_logps * mask[:, 1:]).sum(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def continuation_text(tokenizer, prompt_ids: list[int], completion_ids: list[int]) -> str:
    """A completion as the text that continues its prompt (leading space kept), EOS removed.

    Decoding the completion alone drops the space a word-level tokenizer puts between prompt
    and completion ("the movie was" + "great ." would read "wasgreat ."); decoding prompt +
    completion and cutting the decoded prompt keeps it.
    """
    ids = [t for t in completion_ids if t != tokenizer.eos_token_id]
    prompt = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    full = tokenizer.decode(list(prompt_ids) + ids, skip_special_tokens=True)
    return full[len(prompt) :] if full.startswith(prompt) else " " + full


@dataclass
class Samples:
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]  # up to and including the first EOS
    texts: list[str]  # decoded completions, EOS removed

    @property
    def lengths(self) -> list[int]:
        return [len(c) for c in self.completion_ids]

    def continuations(self, tokenizer) -> list[str]:
        """Every completion as the text continuing its prompt (see continuation_text)."""
        return [
            continuation_text(tokenizer, p, c)
            for p, c in zip(self.prompt_ids, self.completion_ids, strict=True)
        ]


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How one completion per prompt is drawn: at most `max_new_tokens` tokens, at
    `temperature` (0: greedy decoding), from the random stream of `seed`."""

    max_new_tokens: int
    temperature: float = 1.0
    seed: int = 0


def plain_generation(sampling: Sampling, eos: int, pad: int) -> GenerationConfig:
    """Every generation setting explicit, so samples come from pi (at temperature 1) whatever
    the model's own generation_config says: a hub model's repetition_penalty, n-gram blocking,
    top-k or minimum length would otherwise apply to every `generate` call that does not
    override it (measured: sampled KL 0.62 against the exact 0.84 with repetition_penalty 1.3).
    """
    temperature = sampling.temperature
    do_sample = temperature > 0
    return GenerationConfig(
        do_sample=do_sample,
        temperature=temperature if do_sample else 1.0,
        top_k=0 if do_sample else None,
        top_p=1.0,
        min_p=None,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        bad_words_ids=None,
        suppress_tokens=None,
        begin_suppress_tokens=None,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        sequence_bias=None,
        renormalize_logits=False,
        min_new_tokens=0,
        max_new_tokens=sampling.max_new_tokens,
        num_beams=1,
        num_return_sequences=1,
        length_penalty=1.0,
        exponential_decay_length_penalty=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )


@torch.no_grad()
def sample_completions(
    model, tokenizer, prompts: list[str], sampling: Sampling, *, batch_size: int = 64
) -> Samples:
    """Sample one completion per prompt as `sampling` says.

    Runs under a forked RNG so that evaluating in the middle of training never changes the
    training run's random stream (runs with different eval intervals stay comparable). A
    prompt too long for the model's context with `sampling.max_new_tokens` keeps its last tokens
    (`prompt_budget`; the yardstick counts them as data/truncated/eval_prompts).
    """
    model.eval()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    budget = prompt_budget(model, sampling.max_new_tokens)
    prompt_ids = [encode(tokenizer, p) for p in prompts]
    if budget is not None:
        prompt_ids = [ids[-budget:] for ids in prompt_ids]
    completion_ids: list[list[int]] = []
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(sampling.seed)
        for start in range(0, len(prompts), batch_size):
            batch = prompt_ids[start : start + batch_size]
            width = max(len(p) for p in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros_like(ids)
            for i, p in enumerate(batch):  # left padding: generation continues every row at the end
                ids[i, width - len(p) :] = torch.tensor(p)
                attention[i, width - len(p) :] = 1
            generated = model.generate(
                input_ids=ids.to(model.device),
                attention_mask=attention.to(model.device),
                generation_config=plain_generation(sampling, eos, pad),
            )[:, width:]
            for row in generated.tolist():
                completion_ids.append(row[: row.index(eos) + 1] if eos in row else row)
    texts = [
        tokenizer.decode([t for t in c if t != eos], skip_special_tokens=True)
        for c in completion_ids
    ]
    return Samples(prompt_ids, completion_ids, texts)
