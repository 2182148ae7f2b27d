"""Samples come from pi whatever the model's generation_config says (harness.data.sequences).

On the exact world, where KL(pi || pi_ref) is computed by enumerating every response, a policy
whose generation_config sets repetition_penalty 1.3 (as hub chat models often do) is sampled
and its sampled KL held to the exact one.
"""

from __future__ import annotations

import torch

from harness.data.models import load_causal_lm, load_tokenizer
from harness.data.sequences import Sampling, sample_completions, sequence_logps
from harness.data.worlds import get_world
from harness.data.worlds.exact import PROMPTS
from harness.evaluate.stats import kl_estimate


def test_sampled_kl_matches_the_exact_kl_despite_a_repetition_penalty():
    world = get_world("exact")
    tokenizer = load_tokenizer(world.reference_path)
    reference = load_causal_lm(world.reference_path)
    policy = load_causal_lm(world.reference_path)
    torch.manual_seed(0)
    with torch.no_grad():  # a policy away from the reference: its output layer perturbed
        for p in policy.lm_head.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    policy.generation_config.repetition_penalty = 1.3
    policy.generation_config.no_repeat_ngram_size = 2
    prompts = list(PROMPTS) * 64  # every prompt equally: the exact KL is their mean
    max_new = world.defaults()["eval.max_new_tokens"]
    samples = sample_completions(
        policy, tokenizer, prompts, Sampling(max_new_tokens=max_new, seed=1)
    )
    pad = tokenizer.pad_token_id
    kl, stderr = kl_estimate(
        sequence_logps(policy, samples.prompt_ids, samples.completion_ids, pad),
        sequence_logps(reference, samples.prompt_ids, samples.completion_ids, pad),
    )
    lp_pi = world.outcome_logps(policy, tokenizer)
    lp_ref = world.outcome_logps(reference, tokenizer)
    exact = (lp_pi.exp() * (lp_pi - lp_ref)).sum(-1).mean()  # rows: PROMPTS in order
    assert exact > 0.2  # a KL worth measuring
    assert abs(kl - exact.item()) < 3 * stderr, (kl, stderr, exact.item())
