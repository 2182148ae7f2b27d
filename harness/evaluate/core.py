"""The one yardstick: eval/... metrics computed by the harness for every method alike.

Implicit rewards use the experiment's reference model even for reference-free methods, so a
DPO run and an ORPO run are compared on the same quantity.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections import Counter

from harness.config.metrics import (
    EVAL_GOLD_REWARD,
    EVAL_KL,
    EVAL_KL_STDERR,
    EVAL_LENGTH,
    data_filtered,
    data_truncated,
    eval_logps,
    eval_rewards,
    new_pair_metric,
)
from harness.data.preference import PreferenceData, prompt_text
from harness.data.sequences import (
    Sampling,
    context_length,
    prompt_budget,
    sample_completions,
    sequence_logps,
    tokenize_completion,
    truncate_pair,
)
from harness.evaluate.best_of_n import BestOfN, kl_bound
from harness.evaluate.stats import implicit_rewards, kl_estimate, pair_reward_metrics
from harness.methods.checks import ResolvedExperiment


class Evaluator:
    """Held-out implicit rewards, sampled KL, gold reward and length of a policy."""

    def __init__(
        self,
        resolved: ResolvedExperiment,
        data: PreferenceData,
        tokenizer,
        reference,
    ):
        exp = resolved.experiment
        self.exp, self.data, self.tokenizer, self.reference = exp, data, tokenizer, reference
        self.pad = tokenizer.pad_token_id
        self.counts: Counter = Counter()  # data/truncated/... and data/filtered/... held out
        self.prompts = [prompt_text(p, tokenizer) for p in data.eval_prompts[: exp.eval.n_prompts]]
        budget = prompt_budget(reference, exp.eval.max_new_tokens)
        if budget is not None:
            lengths = [
                len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in self.prompts
            ]
            self.counts[data_truncated("eval_prompts")] = sum(n > budget for n in lengths)
        # The reference is frozen: score the held-out pairs under it once.
        self.pairs, self.reference_logps, fitted = self._score_pairs(data.eval_pairs, "eval_pairs")
        self.counts.update(fitted)
        # (tokenized, reference log-probs) of pairs whose responses were never trained on
        self.new_pairs: tuple[dict, dict] | None = None
        if data.new_pairs:
            tokenized, logps, fitted = self._score_pairs(data.new_pairs, "eval_new_pairs")
            self.new_pairs = tokenized, logps
            self.counts.update(fitted)

    def _score_pairs(self, pairs: list[dict], what: str):
        """(tokenized pairs, their reference log-probs, what was cut or left out), counted as
        data/truncated/{what} (`eval_pairs` or `eval_new_pairs`)."""
        counts = Counter({data_truncated(what): 0})
        chosen, rejected = self._fit_pairs(pairs[: self.exp.eval.n_pairs], counts, what)
        tokenized = {"chosen": _unzip(chosen), "rejected": _unzip(rejected)}
        logps = {k: sequence_logps(self.reference, *v, self.pad) for k, v in tokenized.items()}
        return tokenized, logps, counts

    def _fit_pairs(self, pairs: list[dict], counts: Counter, what: str) -> tuple[list, list]:
        """Held-out pairs tokenized and truncated as training truncates them (TRL's keep_start to
        train.max_length), and to the model's context; a pair whose prompt alone fills the
        limit is left out, as TRL leaves it out of training. Both are counted in `counts`."""
        limit = min(self.exp.train.max_length, context_length(self.reference) or math.inf)
        chosen, rejected = [], []
        for row in pairs:
            sides = [
                tokenize_completion(self.tokenizer, *text_pair(row, side, self.tokenizer))
                for side in ("chosen", "rejected")
            ]
            fitted = [truncate_pair(p, c, limit) for p, c in sides]
            if None in fitted:
                # eval_prompt_fills_max_length, eval_new_prompt_fills_max_length
                counts[data_filtered(f"{what.removesuffix('_pairs')}_prompt_fills_max_length")] += 1
                continue
            counts[data_truncated(what)] += fitted != sides
            chosen.append(fitted[0])
            rejected.append(fitted[1])
        return chosen, rejected

    def _reference_samples(self, model):
        """Samples of `model` at temperature 1 and their log-probs under the reference."""
        exp = self.exp
        sampling = Sampling(max_new_tokens=exp.eval.max_new_tokens, seed=exp.train.seed)
        samples = sample_completions(model, self.tokenizer, self.prompts, sampling)
        ids = (samples.prompt_ids, samples.completion_ids)
        return samples, sequence_logps(self.reference, *ids, self.pad)

    def evaluate(self, policy, untrained: bool = False) -> tuple[dict[str, float], dict[str, list]]:
        """(metrics by eval/... name, a table of sample completions for the run's artifacts).

        `untrained`: the policy still has the reference's weights (the step-0 evaluation), so
        its log-probs and samples are the reference's, computed once per run. The
        numbers are the same as from the policy itself: same weights, same seeded sampling.
        """
        metrics: dict[str, float] = {}
        if self.pairs["chosen"][0]:  # held-out pairs exist (paired data) and fit
            metrics |= self._pair_metrics(policy, self.pairs, self.reference_logps, untrained)
        if self.new_pairs is not None and self.new_pairs[0]["chosen"][0]:
            new = self._pair_metrics(policy, *self.new_pairs, untrained)
            metrics |= {new_pair_metric(name): value for name, value in new.items()}

        if untrained:
            samples, reference_logps = self._reference_samples_once
            policy_logps = reference_logps
        else:
            samples, reference_logps = self._reference_samples(policy)
            ids = (samples.prompt_ids, samples.completion_ids)
            policy_logps = sequence_logps(policy, *ids, self.pad)
        metrics[EVAL_KL], metrics[EVAL_KL_STDERR] = kl_estimate(policy_logps, reference_logps)
        sample_metrics, table = self._sample_metrics(samples)
        metrics |= sample_metrics
        if self.data.world is not None:  # untrained: the reference's numbers, computed once
            scored = self.reference if untrained else policy
            metrics.update(self.data.world.extra_eval(scored, self.reference, self.tokenizer))
        return metrics, table

    def _sample_metrics(self, samples) -> tuple[dict[str, float], dict[str, list]]:
        """Length and gold reward of one sample per prompt, and the table of them."""
        metrics = {EVAL_LENGTH: statistics.fmean(samples.lengths)}
        table = {"prompt": self.prompts, "completion": samples.texts}
        if self.data.gold is not None:
            gold = self.data.gold(self.prompts, samples.continuations(self.tokenizer))
            metrics[EVAL_GOLD_REWARD] = statistics.fmean(gold)
            table["gold_reward"] = gold
        return metrics, table

    def evaluate_best_of_n(self, policy: BestOfN) -> tuple[dict[str, float], dict[str, list]]:
        """`evaluate` for best-of-n (harness.evaluate.best_of_n): its samples' length and gold
        reward, eval/kl = the analytic bound (stderr 0: no sampling enters it), the world's
        exact metrics where it has them. No held-out pair metrics: they need log pi_bon of a
        given response, which depends on the reference's whole reward distribution."""
        sampling = Sampling(max_new_tokens=self.exp.eval.max_new_tokens, seed=self.exp.train.seed)
        samples = policy.sample(self.prompts, sampling)
        metrics = {EVAL_KL: kl_bound(policy.n), EVAL_KL_STDERR: 0.0}
        sample_metrics, table = self._sample_metrics(samples)
        metrics |= sample_metrics
        if self.data.world is not None:
            metrics |= self.data.world.best_of_n_eval(
                self.reference, self.tokenizer, policy.picker, policy.n
            )
        return metrics, table

    def reference_table(self) -> dict[str, list]:
        """The table `evaluate(untrained=True)` returns: the reference's own samples."""
        return self._sample_metrics(self._reference_samples_once[0])[1]

    @functools.cached_property
    def _reference_samples_once(self):
        """The reference's samples and their log-probs: the step-0 evaluation and the
        reference's sample table share them."""
        return self._reference_samples(self.reference)

    def _pair_metrics(self, policy, pairs: dict, reference_logps: dict, untrained: bool) -> dict:
        """eval/rewards/... and eval/logps/... of `policy` on tokenized pairs."""
        logps = (
            reference_logps
            if untrained
            else {k: sequence_logps(policy, *v, self.pad) for k, v in pairs.items()}
        )
        beta = self.exp.beta
        rewards = {k: implicit_rewards(logps[k], reference_logps[k], beta) for k in logps}
        metrics = {
            eval_rewards(name): value
            for name, value in pair_reward_metrics(rewards["chosen"], rewards["rejected"]).items()
        }
        for side in ("chosen", "rejected"):
            metrics[eval_logps(side)] = logps[side].mean().item()
        return metrics


def text_pair(row: dict, side: str, tokenizer) -> tuple[str, str]:
    """(prompt text, completion text) of a paired row; conversational rows via the chat template."""
    prompt, completion = row.get("prompt", ""), row[side]
    if isinstance(completion, str):
        return prompt, completion
    if tokenizer.chat_template is None:
        raise ValueError("conversational data needs a tokenizer with a chat template")
    messages = list(prompt or []) + list(completion)
    prompt_messages = list(prompt) if prompt else messages[:-1]
    prompt_text = tokenizer.apply_chat_template(
        prompt_messages, tokenize=False, add_generation_prompt=True
    )
    full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    return prompt_text, full_text[len(prompt_text) :]


def _unzip(tokenized: list[tuple[list[int], list[int]]]) -> tuple[list, list]:
    return [p for p, _ in tokenized], [c for _, c in tokenized]
