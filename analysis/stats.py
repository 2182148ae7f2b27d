"""The few numbers analysis computes itself: seed CIs, Pareto fronts and over-optimization fits."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import optimize, stats


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval mean +- t_{(1+level)/2, n-1} * s / sqrt(n).

    s is the sample standard deviation over seeds (ddof=1); with one value the bounds are NaN.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return mean, float(mean - half), float(mean + half)


def mean_ci_by_group(
    table: pd.DataFrame, by: list[str], value: str, level: float = 0.95
) -> pd.DataFrame:
    """`mean_ci` of `value` within each `by` group, in one pass over the table: columns `by`,
    then n (values that are not NaN), mean, ci_low, ci_high and sd, one row per group in key
    order (rows with a NaN key are left out, as groupby does)."""
    grouped = table.groupby(by, sort=True)[value]
    count = grouped.count()  # three reductions: half the time of one agg([...]) on small tables
    n = count.to_numpy()
    mean, sd = grouped.mean().to_numpy(dtype=float), grouped.std().to_numpy(dtype=float)
    half = np.full(len(n), np.nan)
    two = n >= 2  # one value has no interval
    half[two] = stats.t.ppf((1 + level) / 2, n[two] - 1) * sd[two] / np.sqrt(n[two])
    keys = {name: count.index.get_level_values(i) for i, name in enumerate(by)}
    return pd.DataFrame(
        {**keys, "n": n, "mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd}
    )


def pareto_front(cost, value) -> np.ndarray:
    """Indices of the points no other point beats: lower cost (KL) and higher value (reward).

    Sorted by cost; a point is on the front if its value exceeds every value at lower or equal
    cost (ties in cost keep the higher value only).
    """
    cost, value = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    order = np.lexsort((-value, cost))  # by cost, and within equal cost the best value first
    front, best = [], -np.inf
    for i in order:
        if value[i] > best:
            front.append(i)
            best = value[i]
    return np.array(front, dtype=int)


def bon_form(d, alpha, beta):
    """Gao et al. 2022, eq. 1 (best-of-n): R(d) = d (alpha - beta d), d = sqrt(KL)."""
    return d * (alpha - beta * d)


def rl_form(d, alpha, beta):
    """Gao et al. 2022, eq. 2 (RL): R(d) = d (alpha - beta log d), d = sqrt(KL) > 0."""
    return d * (alpha - beta * np.log(d))


GAO_FORMS = {"bon": bon_form, "rl": rl_form}


def fit_gao(form: str, d, gain) -> tuple[float, float]:
    """Least-squares (alpha, beta) of a Gao et al. form to gains `gain` at distances `d`.

    Both forms are linear in (alpha, beta), so scipy's curve_fit converges from any start.
    The RL form is undefined at d = 0; those points are left out of its fit.
    """
    d, gain = np.asarray(d, dtype=float), np.asarray(gain, dtype=float)
    if form == "rl":
        d, gain = d[d > 0], gain[d > 0]
    (alpha, beta), _ = optimize.curve_fit(GAO_FORMS[form], d, gain, p0=(1.0, 0.0))
    return float(alpha), float(beta)


def fit_gao_ci(form: str, d, gain, level: float = 0.95) -> dict[str, float]:
    """`fit_gao` with each coefficient's `level` interval: estimate +- t_{n-2} * standard error.

    The forms are linear in (alpha, beta), so curve_fit's covariance (scaled by the residual
    variance, absolute_sigma=False) is the ordinary least-squares one and the t interval exact
    under Gaussian noise. With n <= 2 points the bounds are NaN.
    """
    d, gain = np.asarray(d, dtype=float), np.asarray(gain, dtype=float)
    if form == "rl":
        d, gain = d[d > 0], gain[d > 0]
    (alpha, beta), cov = optimize.curve_fit(GAO_FORMS[form], d, gain, p0=(1.0, 0.0))
    out = {"alpha": float(alpha), "beta": float(beta), "n": int(d.size)}
    dof = d.size - 2
    spread = stats.t.ppf((1 + level) / 2, dof) * np.sqrt(np.diag(cov)) if dof > 0 else [np.nan] * 2
    for name, value, half in zip(("alpha", "beta"), (alpha, beta), spread, strict=True):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(value - half), float(value + half)
    return out


def front_advantage(kl_a, reward_a, kl_b, reward_b, n_grid: int = 200) -> float:
    """How far front a lies above front b: the mean over KL budgets k of best_a(k) - best_b(k).

    best(k) is the highest reward among a method's points with KL <= k (its Pareto front as a
    step function). The budgets are n_grid evenly spaced values over the KL range both fronts
    cover, [max of the two smallest KLs, min of the two largest], so neither is extrapolated.
    Positive: a reaches more reward for the same KL on average. NaN if the ranges do not overlap.
    """
    a = _best_by_budget(kl_a, reward_a)
    b = _best_by_budget(kl_b, reward_b)
    if not (a[0].size and b[0].size):
        return np.nan
    low, high = max(a[0][0], b[0][0]), min(a[0][-1], b[0][-1])
    if not low <= high:
        return np.nan
    grid = np.linspace(low, high, n_grid)
    return float(np.mean(_step(a, grid) - _step(b, grid)))


def _best_by_budget(kl, reward) -> tuple[np.ndarray, np.ndarray]:
    """(sorted KLs, running maximum of reward up to each of them)."""
    kl, reward = np.asarray(kl, dtype=float), np.asarray(reward, dtype=float)
    keep = ~(np.isnan(kl) | np.isnan(reward))
    order = np.argsort(kl[keep], kind="stable")
    return kl[keep][order], np.maximum.accumulate(reward[keep][order])


def _step(front: tuple[np.ndarray, np.ndarray], budgets: np.ndarray) -> np.ndarray:
    kl, best = front
    return best[np.searchsorted(kl, budgets, side="right") - 1]


def t_test(values, threshold: float = 0.0, level: float = 0.95) -> dict[str, float]:
    """One-sample Student-t summary of `values` (per-seed numbers, or paired differences).

    n, mean, sd (ddof=1), ci_low/ci_high (mean +- t_{(1+level)/2, n-1} sd / sqrt(n), as
    `mean_ci`) and p: the two-sided p-value of H0 mean = threshold, 2 P(T_{n-1} > |t|) with
    t = (mean - threshold) sqrt(n) / sd. NaN where n < 2; p = 0 or 1 where sd = 0.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    mean, low, high = mean_ci(x, level)
    out = {"n": int(x.size), "mean": mean, "sd": np.nan, "ci_low": low, "ci_high": high}
    out["p"] = np.nan
    if x.size >= 2:
        sd = float(x.std(ddof=1))
        out["sd"] = sd
        if sd > 0:
            t = (mean - threshold) * np.sqrt(x.size) / sd
            out["p"] = float(2 * stats.t.sf(abs(t), x.size - 1))
        else:
            out["p"] = 0.0 if mean != threshold else 1.0
    return out


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order.

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1)
    p_(j)). Rejecting where adjusted p < alpha controls the family-wise error at alpha. NaN
    entries stay NaN and do not count in m.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8):
    """The smallest true mean difference a two-sided one-sample (or paired) t-test at `alpha`
    detects with probability `power`, given n values with standard deviation sd.

    Solves P(|T'| > t_{1-alpha/2, n-1}) = power for the noncentrality lambda of T' ~
    noncentral t(n-1, lambda), then MDE = lambda sd / sqrt(n). For large n it tends to the
    normal formula (z_{1-alpha/2} + z_{power}) sd / sqrt(n) = 2.8016 sd / sqrt(n) at 5%, 80%.
    NaN where n < 2 or sd is NaN.
    """
    if n < 2 or not np.isfinite(sd):
        return np.nan
    dof = n - 1
    crit = stats.t.ppf(1 - alpha / 2, dof)

    def shortfall(lam):
        # scipy's noncentral t returns NaN far in a tail, where the probability is ~0
        tails = np.nan_to_num([stats.nct.sf(crit, dof, lam), stats.nct.cdf(-crit, dof, lam)])
        return tails.sum() - power

    upper = crit + 4.0  # power 0.8 needs lambda ~ crit + 0.84 for many dof, more for few
    while shortfall(upper) < 0:
        upper *= 2
    lam = optimize.brentq(shortfall, 0.0, upper)
    return float(lam * sd / np.sqrt(n))


def seeds_needed(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """The fewest seeds whose minimum detectable effect is at most |effect| (capped at 1000)."""
    if not (np.isfinite(sd) and np.isfinite(effect)) or effect == 0:
        return 1000
    for n in range(2, 1000):
        if minimum_detectable_effect(sd, n, alpha, power) <= abs(effect):
            return n
    return 1000


def matched_front_lead(runs_a, runs_b, max_draws: int = 64, seed: int = 0) -> float:
    """`front_advantage` with both fronts built from the same number of runs (so of points).

    runs_a, runs_b: one (kl, reward) pair of arrays per run (its evaluations). A front is a
    running maximum, so the side with more noisy points reaches higher by chance alone. Here
    the side with more runs is cut to the other's count: the lead is averaged over every
    subset of that size (or over `max_draws` subsets drawn with a fixed RNG when there are
    more), so for two methods whose runs come from one distribution it is symmetric about 0
    whatever their run counts. Runs should log the same evaluations (eval_every does that).
    """
    if not runs_a or not runs_b:
        return np.nan
    if len(runs_a) == len(runs_b):
        return front_advantage(*pool_runs(runs_a), *pool_runs(runs_b))
    flip = len(runs_a) < len(runs_b)
    big, small = (runs_b, runs_a) if flip else (runs_a, runs_b)
    other = pool_runs(small)
    leads = np.array(
        [
            front_advantage(*pool_runs([big[i] for i in pick]), *other)
            for pick in _subsets(len(big), len(small), max_draws, seed)
        ]
    )
    if not np.isfinite(leads).any():
        return np.nan
    return float(-np.nanmean(leads) if flip else np.nanmean(leads))


def pool_runs(runs) -> tuple[np.ndarray, np.ndarray]:
    kl = np.concatenate([np.asarray(k, dtype=float) for k, _ in runs])
    reward = np.concatenate([np.asarray(r, dtype=float) for _, r in runs])
    return kl, reward


def _subsets(n: int, k: int, max_draws: int, seed: int) -> list[tuple[int, ...]]:
    """Every k-subset of range(n) if there are at most max_draws, else max_draws random ones."""
    if math.comb(n, k) <= max_draws:
        return list(itertools.combinations(range(n), k))
    rng = np.random.default_rng(seed)
    return [tuple(rng.choice(n, size=k, replace=False)) for _ in range(max_draws)]


def lead_over_paths(kl, reward, runs) -> float:
    """The mean lead of single points (kl, reward) over runs' reward-KL paths at the points' KL.

    For a method evaluated once per run (best-of-n: one point per n) against one evaluated along
    its training (one path per run). Each path is read at a point's KL by linear interpolation
    along the path sorted by KL, where the path covers that KL; the paths covering it are
    averaged. No running maximum on either side: a side with more noisy points gains nothing.
    Points no path covers are left out; NaN when none is covered.
    """
    paths = [_sorted_path(k, r) for k, r in runs]
    leads = []
    for point_kl, point_reward in zip(
        np.asarray(kl, float), np.asarray(reward, float), strict=True
    ):
        at_kl = [np.interp(point_kl, k, r) for k, r in paths if k[0] <= point_kl <= k[-1]]
        if at_kl:
            leads.append(point_reward - float(np.mean(at_kl)))
    return float(np.mean(leads)) if leads else np.nan


def _sorted_path(kl, reward) -> tuple[np.ndarray, np.ndarray]:
    kl, reward = np.asarray(kl, float), np.asarray(reward, float)
    order = np.argsort(kl)
    return kl[order], reward[order]
