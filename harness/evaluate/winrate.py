"""Win rates of a policy against baselines across sampling temperatures (DPO paper, figs. 2-3).

On held-out prompts the policy and each baseline answer once per prompt; a judge (a reward
model or the world's gold reward) scores both; the policy wins a prompt when its score is
higher, and a tie counts half. The policy and a sampled baseline draw with independent seeds
(`sampling_seed`, logged in the completions table): with one seed, a policy still close to
the reference would give the very same texts, ties by construction and a CI of zero width.
Names: `winrate/{judge}/vs_{baseline}/t{T:g}` per temperature, and the headline
`winrate/{judge}/vs_{baseline}` at temperature 1 (samples from pi itself), or at the highest
temperature evaluated; each with `_ci_low` and `_ci_high` (95%).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from statistics import NormalDist
from typing import Any

import numpy as np

from harness.config import metrics
from harness.data.preference import PreferenceData
from harness.data.sequences import Samples, Sampling, sample_completions

Judge = Callable[[list[str], list[str]], list[float]]  # (prompts, completions) -> scores


@dataclass(frozen=True)
class WinRate:
    value: float
    ci_low: float
    ci_high: float


def outcomes(policy: Sequence[float], baseline: Sequence[float]) -> np.ndarray:
    """Per prompt: 1 if the policy's score is higher, 0.5 on a tie, 0 if lower."""
    diff = np.asarray(policy, dtype=float) - np.asarray(baseline, dtype=float)
    return 0.5 + 0.5 * np.sign(diff)


def win_rate(
    policy: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> WinRate:
    """mean_i w_i with w_i = 1[s_i > b_i] + 0.5 * 1[s_i = b_i], and a CI over prompts.

    The percentile bootstrap resamples prompts with replacement (scipy.stats.bootstrap);
    BCa is scipy's default but its acceleration is undefined when every prompt has the same
    outcome. When every prompt has the same outcome (a policy that wins everywhere) the
    bootstrap can only return [x, x]; the Wilson interval at that share says how far a
    sample of that size leaves the true rate open instead.
    """
    from scipy import stats  # here: a run that scores no win rate skips its 0.8 s import

    w = outcomes(policy, baseline)
    value = float(w.mean())
    if len(w) < 2 or np.all(w == w[0]):
        return WinRate(value, *wilson_interval(value, len(w), confidence))
    ci = stats.bootstrap(
        (w,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return WinRate(value, float(ci.low), float(ci.high))


def wilson_interval(share: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion `share` observed over n trials (Wilson 1927).

        (p + z^2/2n -+ z sqrt(p (1 - p)/n + z^2/4n^2)) / (1 + z^2/n),  z = Phi^-1((1 + c)/2)

    Unlike the normal (Wald) interval it has positive width at p = 0 and p = 1.
    """
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    centre = share + z * z / (2 * n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, float((centre - half) / scale)), min(1.0, float((centre + half) / scale))


SIDES = ("policy", "reference")  # who samples; `chosen` is fixed text, not sampled

Sampler = Callable[[list[str], Sampling], Samples]  # (prompts, how) -> one sample per prompt


@dataclass(frozen=True)
class Contestants:
    """The policy being scored and the reference it is compared with, on one tokenizer.

    `sample_policy` draws the policy's answers where the policy is not a model of its own
    (best-of-n: `BestOfN.sample`); lm-eval then scores `policy` (the model it samples from).
    """

    policy: Any
    reference: Any
    tokenizer: Any
    sample_policy: Sampler | None = None

    def sampler(self, side: str) -> Sampler:
        if side == "policy" and self.sample_policy is not None:
            return self.sample_policy
        model = self.policy if side == "policy" else self.reference
        return partial(sample_completions, model, self.tokenizer)


@dataclass(frozen=True)
class SamplingPlan:
    """The temperatures both sides answer at, the answers' length, and the run's seed."""

    temperatures: Sequence[float]
    max_new_tokens: int
    seed: int = 0

    def sampling(self, temperature_index: int, side: str) -> Sampling:
        return Sampling(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperatures[temperature_index],
            seed=sampling_seed(self.seed, temperature_index, side),
        )


def sampling_seed(seed: int, temperature_index: int, side: str) -> int:
    """A seed per (run seed, temperature, side) from numpy's SeedSequence: independent streams
    for the policy and the reference, and for each temperature."""
    sequence = np.random.SeedSequence([seed, temperature_index, SIDES.index(side)])
    return int(sequence.generate_state(1)[0])


def metric_names(judge: str, baseline: str, temperature: float | None) -> dict[str, str]:
    """MLflow names of a win rate and its CI; temperature None = the headline."""
    base = metrics.winrate(judge, baseline, temperature)
    return {"value": base, "ci_low": base + metrics.CI_LOW, "ci_high": base + metrics.CI_HIGH}


def headline_temperature(temperatures: Sequence[float]) -> float:
    """1.0 (samples from pi) when evaluated, else the highest temperature evaluated."""
    return 1.0 if 1.0 in temperatures else max(temperatures)


def chosen_responses(data: PreferenceData, prompts: list[str]) -> dict[str, str]:
    """The first held-out chosen response of each prompt that has one (text data only)."""
    chosen: dict[str, str] = {}
    for row in data.eval_pairs:
        prompt, response = row.get("prompt"), row.get("chosen")
        if isinstance(prompt, str) and isinstance(response, str) and prompt not in chosen:
            chosen[prompt] = response
    return {p: chosen[p] for p in prompts if p in chosen}


def win_rates(
    contestants: Contestants,
    plan: SamplingPlan,
    *,
    prompts: list[str],
    chosen: Mapping[str, str],
    judges: Mapping[str, Judge],
) -> tuple[dict[str, float], dict[str, list]]:
    """(metrics, table): every judge x baseline x temperature, and the judged completions.

    Baselines: `reference` (the reference model sampled at the same temperature) and
    `chosen` (the dataset's chosen response, where held-out prompts have one).
    """
    chosen_prompts = [p for p in prompts if p in chosen]
    chosen_scores = {
        name: judge(chosen_prompts, [chosen[p] for p in chosen_prompts])
        for name, judge in judges.items()
    }
    metrics: dict[str, float] = {}
    table: dict[str, list] = {"temperature": [], "prompt": [], "policy": [], "reference": []}
    table |= {"chosen": []} if chosen_prompts else {}
    table |= {f"{side}_seed": [] for side in SIDES}
    top, tokenizer = headline_temperature(plan.temperatures), contestants.tokenizer
    for i, temperature in enumerate(plan.temperatures):
        draws = {side: plan.sampling(i, side) for side in SIDES}
        answers = {
            side: contestants.sampler(side)(prompts, draws[side]).continuations(tokenizer)
            for side in SIDES
        }
        add_answers(table, prompts, chosen if chosen_prompts else None, draws, answers)
        for name, judge in judges.items():
            scores = {side: judge(prompts, texts) for side, texts in answers.items()}
            contests = {"reference": (scores["policy"], scores["reference"])}
            if chosen_prompts:
                on_chosen = [
                    s for p, s in zip(prompts, scores["policy"], strict=True) if p in chosen
                ]
                contests["chosen"] = (on_chosen, chosen_scores[name])
            headline = temperature == top
            metrics |= contest_metrics(name, contests, temperature, headline, seed=plan.seed)
            for side in scores:
                table.setdefault(f"{side}_{name}", []).extend(scores[side])
            if chosen_prompts:
                by_prompt = dict(zip(chosen_prompts, chosen_scores[name], strict=True))
                table.setdefault(f"chosen_{name}", []).extend(by_prompt.get(p) for p in prompts)
    return metrics, table


def add_answers(
    table: dict[str, list],
    prompts: list[str],
    chosen: Mapping[str, str] | None,
    draws: Mapping[str, Sampling],
    answers: Mapping[str, list[str]],
) -> None:
    """One temperature's rows of the completions table: the seeds, prompts and answers, and
    the chosen response of each prompt (None where it has none) unless `chosen` is None."""
    for side in SIDES:
        table[f"{side}_seed"] += [draws[side].seed] * len(prompts)
    table["temperature"] += [draws["policy"].temperature] * len(prompts)
    table["prompt"] += prompts
    table["policy"] += answers["policy"]
    table["reference"] += answers["reference"]
    if chosen is not None:
        table["chosen"] += [chosen.get(p) for p in prompts]


def contest_metrics(
    judge: str, contests: Mapping, temperature: float, headline: bool, *, seed: int
) -> dict[str, float]:
    """Win rate and CI of each (policy scores, baseline scores) contest by `judge` at
    `temperature`, under the headline name too where `headline`."""
    metrics: dict[str, float] = {}
    for baseline, (ours, theirs) in contests.items():
        result = win_rate(ours, theirs, seed=seed)
        for t in [temperature] + ([None] if headline else []):
            for field, name in metric_names(judge, baseline, t).items():
                metrics[name] = getattr(result, field)
    return metrics
