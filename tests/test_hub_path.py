"""The hub recipes' code path, offline: a Qwen2-architecture model and a BPE tokenizer with a
chat template saved to a folder, DPO with LoRA on conversational pairs loaded by path, end to
end into MLflow, then `harness eval` on the saved adapter."""

import json
import random

import pytest
import torch
from mlflow.tracking import MlflowClient

from harness.commands.cli import main
from tests.readback import artifact_paths, metric_history

WORDS = [
    "the",
    "movie",
    "film",
    "plot",
    "was",
    "is",
    "great",
    "good",
    "fine",
    "bad",
    "awful",
    "dull",
    "loved",
    "hated",
    "it",
]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_qwen2(folder):
    """A 2-layer Qwen2 (about 0.1M parameters) and a byte-level BPE tokenizer trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    rng = random.Random(0)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [" ".join(rng.choices(WORDS, k=8)) for _ in range(300)] + ["user assistant"]
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def chat_pairs(path, n=48):
    rng = random.Random(1)
    with open(path, "w") as f:
        for _ in range(n):
            prompt = [{"role": "user", "content": " ".join(rng.choices(WORDS, k=4))}]
            row = {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": "great good fine"}],
                "rejected": [{"role": "assistant", "content": "awful bad dull"}],
            }
            f.write(json.dumps(row) + "\n")


def perplexity_task(folder):
    """A local lm-eval task: perplexity on a few sentences of the same words."""
    data = folder / "ppl.jsonl"
    data.write_text("".join(json.dumps({"text": "the movie was great"}) + "\n" for _ in range(4)))
    (folder / "tiny_ppl.yaml").write_text(
        "task: tiny_ppl\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: loglikelihood_rolling\ntest_split: test\n"
        'doc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        "metric_list:\n  - metric: word_perplexity\nmetadata:\n  version: 1.0\n"
    )


@pytest.mark.slow
def test_qwen2_from_a_folder_trains_with_lora_on_chat_pairs_and_scores_by_path(tmp_path, tracking):
    model, pairs, tasks = tmp_path / "qwen2", tmp_path / "chat.jsonl", tmp_path / "tasks"
    tiny_qwen2(model)
    chat_pairs(pairs)
    tasks.mkdir()
    perplexity_task(tasks)
    (tmp_path / "study.py").write_text(
        "from harness import EvalSpec, Experiment, LoraSpec, ModelSpec, TrainSpec\n"
        f"CHAT = Experiment(method='dpo', beta=0.1, dataset={str(pairs)!r}, name='chat-lora',\n"
        f"    model=ModelSpec(name_or_path={str(model)!r}, lora=LoraSpec(r=4, alpha=8),\n"
        "                    dtype='bfloat16', gradient_checkpointing=True),\n"
        "    train=TrainSpec(steps=3, batch_size=4, eval_every=0, log_every=1, lr=1e-3,\n"
        "                    max_length=48),\n"
        "    eval=EvalSpec(n_prompts=4, n_pairs=4, max_new_tokens=4, n_table_rows=2))\n"
    )
    assert main(["run", str(tmp_path / "study.py"), "--tracking-uri", tracking]) == 0

    client = MlflowClient(tracking)
    (run,) = client.search_runs(client.search_experiments()[0].experiment_id)
    history = metric_history(run.info.run_id)
    assert [s for s, _ in history["train/loss"]] == [1, 2, 3]
    assert history["eval/kl"][0] == (0, 0.0)  # the base with the adapter off is the reference
    assert run.data.params["model.dtype"] == "bfloat16"
    saved = artifact_paths(run.info.run_id)
    assert {"policy/adapter_config.json", "policy/tokenizer_config.json"} <= saved

    args = ["eval", "--run-id", run.info.run_id, "--tracking-uri", tracking, "--judge", "none"]
    assert main([*args, "--tasks", "tiny_ppl", "--include-path", str(tasks)]) == 0
    metrics = client.get_run(run.info.run_id).data.metrics
    assert metrics["bench/tiny_ppl/word_perplexity"] > 1.0
    assert metrics["bench/tiny_ppl/word_perplexity_reference"] > 1.0
