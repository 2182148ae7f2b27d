"""Exact quantities over an enumerable response space: KL, expected reward, the optimal policy.

The space (the `exact` world's): the vocabulary is a word alphabet W and EOS. A valid response y
is 1 to L words ended by EOS, with

    log pi(y | x) = sum_t log pi(y_t | x, y_<t) + log pi(EOS | x, y)      (completion + EOS),

the quantity TRL trains and `harness.data.sequences` scores. Everything else the model can do is
invalid: EOS as first token (one outcome), or L words followed by a word instead of EOS (W**(L+1)
outcomes, one per first L+1 tokens). These are exactly the outcomes of sampling with at most
L+1 new tokens, cut at the first EOS, so a Monte-Carlo estimate from such samples targets the
same KL. The outcomes of a prompt sum to 1 by construction. Order: valid responses by length
then lexicographically by word index (`response_tree`), EOS-first, then the overflows.

The optimal policy of the KL-regularised objective max_pi E_pi[r] - beta KL(pi || pi_ref) is
pi*_beta(y|x) = pi_ref(y|x) exp(r(x,y)/beta) / Z(x) (Rafailov et al. 2023, eq. 4), and its KL
is E_pi*[r]/beta - log Z(x). Every function here works on tensors of log-probabilities shaped
(n_prompts, n_outcomes), in float64, and averages over prompts where it returns one number.
"""

from __future__ import annotations

import itertools
import math

import torch


def response_tree(n_words: int, max_words: int) -> list[tuple[int, ...]]:
    """Every valid response as a tuple of word indices: by length 1..L, then lexicographic."""
    return [
        r
        for length in range(1, max_words + 1)
        for r in itertools.product(range(n_words), repeat=length)
    ]


@torch.no_grad()
def next_token_logps(
    model, prompt_ids: list[list[int]], word_ids: list[int], max_words: int
) -> list[torch.Tensor]:
    """log pi(. | x, y_<d) for every prompt x and every word prefix y_<d of depth d = 0..L.

    One forward pass per depth and prompt: depth d+1 appends each of the W words to every
    depth-d prefix (lexicographic order kept), reusing the depth-d key/value cache repeated
    W-fold, so each pass reads one new token per row. Returns L+1 float64 tensors, depth d
    shaped (n_prompts, W**d, vocabulary).
    """
    model.eval()
    device = model.device
    words = torch.tensor(word_ids, device=device)
    per_prompt = []
    for prompt in prompt_ids:
        out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
        depths = [out.logits[:, -1].double().log_softmax(-1).cpu()]
        for _ in range(max_words):
            rows = depths[-1].shape[0]
            cache = out.cache
            cache.batch_repeat_interleave(len(word_ids))  # row j becomes rows j*W .. j*W + W-1
            out = model(input_ids=words.repeat(rows)[:, None], cache=cache, use_cache=True)
            depths.append(out.logits[:, -1].double().log_softmax(-1).cpu())
        per_prompt.append(depths)
    return [torch.stack([p[d] for p in per_prompt]) for d in range(max_words + 1)]


def outcome_logps(next_logps: list[torch.Tensor], word_ids: list[int], eos_id: int) -> torch.Tensor:
    """log pi of every outcome, shape (n, N + 1 + W**(L+1)), in the order of the module docstring.

    From the per-depth next-token log-probs of `next_token_logps`: a valid response of length k
    is its prefix's log-prob plus log pi(EOS | x, y); an overflow is an L-word prefix's log-prob
    plus that of the word after it.
    """
    n, max_words = next_logps[0].shape[0], len(next_logps) - 1
    if next_logps[0].shape[-1] != len(word_ids) + 1:
        raise ValueError("exact enumeration needs a vocabulary of exactly the words and EOS")
    words = torch.tensor(word_ids)
    prefix = torch.zeros(n, 1, dtype=torch.float64)  # log-prob of each word prefix of this depth
    valid = []
    for depth, logps in enumerate(next_logps):
        if depth > 0:
            valid.append(prefix + logps[..., eos_id])
        if depth < max_words:
            prefix = (prefix[..., None] + logps[..., words]).reshape(n, -1)
    overflow = (prefix[..., None] + next_logps[max_words][..., words]).reshape(n, -1)
    return torch.cat([*valid, next_logps[0][:, :, eos_id], overflow], dim=1)


def invalid_logp(logps: torch.Tensor, n_valid: int) -> torch.Tensor:
    """log pi(invalid | x) = log-sum-exp over the outcomes after the N valid ones, shape (n,)."""
    return logps[:, n_valid:].logsumexp(-1)


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_y p(y) (log p(y) - log q(y)) per prompt, shape (n,); 0 log 0 = 0."""
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)


def expected_reward(logp: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """E_p[r] = sum_y p(y) r(x, y) per prompt, shape (n,)."""
    return (logp.exp() * rewards).sum(-1)


def optimal_logps(ref_logps: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """log pi*_beta = log pi_ref + r/beta - log Z, Z = sum_y pi_ref exp(r/beta) (DPO paper, eq. 4).

    Normalised by log-sum-exp, so it stays finite for beta -> 0 (where it tends to pi_ref
    restricted to the argmax of r) as for beta -> infinity (where it tends to pi_ref).
    """
    scores = ref_logps + rewards / beta
    return scores - scores.logsumexp(-1, keepdim=True)


def log_partition(ref_logps: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """log Z(x) = log sum_y pi_ref(y|x) exp(r(x,y)/beta), shape (n,)."""
    return (ref_logps + rewards / beta).logsumexp(-1)


def optimal_point(
    ref_logps: torch.Tensor, rewards: torch.Tensor, beta: float
) -> tuple[float, float]:
    """(KL(pi*_beta || pi_ref), E_pi*[r]), each averaged over prompts: one point of the frontier."""
    opt = optimal_logps(ref_logps, rewards, beta)
    kl = kl_divergence(opt, ref_logps).mean().item()
    return kl, expected_reward(opt, rewards).mean().item()


def frontier(
    ref_logps: torch.Tensor, rewards: torch.Tensor, betas
) -> list[tuple[float, float, float]]:
    """(beta, KL, reward) of the optimal policy for each beta: the optimal reward-KL frontier.

    A common beta for every prompt is the Lagrange multiplier of the prompt-averaged KL, so
    these points are the best average reward reachable at each average KL.
    """
    return [(beta, *optimal_point(ref_logps, rewards, beta)) for beta in betas]


# The bracket of the search for beta. Rewards of the exact world differ by multiples of 0.05, so
# at beta = 1e-3 pi* is the argmax up to exp(-50); at beta = 1e4 its KL is below 1e-7.
BETA_MIN, BETA_MAX = 1e-3, 1e4


def frontier_reward_at(
    ref_logps: torch.Tensor, rewards: torch.Tensor, kl: float, iterations: int = 40
) -> float:
    """The optimal expected reward at average KL `kl`: R*(beta) where KL*(beta) = kl.

    KL*(beta) decreases monotonically in beta (dKL*/dbeta = -Var_pi*[r] / beta^3), so beta is
    found by bisection on log beta. Beyond the largest KL (beta -> 0) the frontier is flat at
    the argmax reward; below the smallest, it is interpolated linearly to (0, E_ref[r]).
    """
    reference_reward = expected_reward(ref_logps, rewards).mean().item()
    if kl <= 0:
        return reference_reward
    kl_max, reward_max = optimal_point(ref_logps, rewards, BETA_MIN)
    if kl >= kl_max:
        return reward_max
    kl_min, reward_min = optimal_point(ref_logps, rewards, BETA_MAX)
    if kl <= kl_min:
        return reference_reward + (reward_min - reference_reward) * kl / kl_min
    lo, hi = math.log(BETA_MIN), math.log(BETA_MAX)  # KL*(e^lo) > kl > KL*(e^hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if optimal_point(ref_logps, rewards, math.exp(mid))[0] > kl:
            lo = mid
        else:
            hi = mid
    return optimal_point(ref_logps, rewards, math.exp((lo + hi) / 2))[1]


def frontier_gap(
    ref_logps: torch.Tensor, rewards: torch.Tensor, policy_logps: torch.Tensor
) -> float:
    """R*(KL(pi)) - E_pi[r]: how far below the optimal frontier a policy is, at its own KL.

    Never negative up to rounding: pi*_beta maximises E[r] - beta KL, so no policy with
    KL <= KL*(beta) earns more than R*(beta). 0 means the policy is on the frontier.
    """
    kl = kl_divergence(policy_logps, ref_logps).mean().item()
    reward = expected_reward(policy_logps, rewards).mean().item()
    return frontier_reward_at(ref_logps, rewards, kl) - reward


def best_of_n_logps(ref_logps: torch.Tensor, rewards: torch.Tensor, n: int) -> torch.Tensor:
    """log pi_bon(y|x): the best of n samples from pi_ref by reward r, a tie going to the first.

    Outcomes of equal reward form a class c; with F(c) = pi_ref(r(Y) <= r_c) the reference's
    reward CDF, the largest of n independent rewards falls in c with probability
    F(c)^n - F(c^-)^n (c^- the class just below), and the first sample in c that the sampler
    keeps is distributed as pi_ref restricted to c, so

        pi_bon(y) = pi_ref(y) / pi_ref(c) * (F(c)^n - F(c^-)^n),    y in c,

    which is F(y)^n - F(y^-)^n when every reward is distinct (Beirami et al. 2024, Lemma 1,
    arXiv:2401.01879). log(F^n - F_-^n) = n log F + log(-expm1(n (log F_- - log F))) keeps
    precision where F_- is close to F. Shapes (n_prompts, n_outcomes), float64.
    """
    out = torch.empty_like(ref_logps)
    for i, (logp, reward) in enumerate(zip(ref_logps, rewards, strict=True)):
        _, classes = torch.unique(reward, sorted=True, return_inverse=True)  # ascending reward
        mass = torch.zeros(int(classes.max()) + 1, dtype=torch.float64)
        mass.index_add_(0, classes, logp.exp())
        cdf = mass.cumsum(0) / mass.sum()  # F(c), ending at exactly 1
        log_cdf = cdf.log()
        log_below = torch.cat([torch.tensor([-math.inf], dtype=torch.float64), log_cdf[:-1]])
        log_class = n * log_cdf + torch.log(-torch.expm1(n * (log_below - log_cdf)))
        per_outcome = logp - mass.log()[classes] + log_class[classes]
        out[i] = torch.where(mass[classes] > 0, per_outcome, -math.inf)
    return out
