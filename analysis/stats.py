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
