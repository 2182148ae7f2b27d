"""The few numbers analysis computes itself: seed CIs, Pareto fronts and over-optimization fits."""

from __future__ import annotations

import numpy as np
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
