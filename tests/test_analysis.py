"""analysis: the numbers it computes itself, checked by hand; table formats; colours; imports."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from analysis import stats, style, tables
from analysis.load import RunData
from analysis.report import safe
from harness.methods.catalog import METHODS


def test_mean_ci_is_the_student_t_interval():
    # values 1, 2, 3: mean 2, s = 1, s / sqrt(3) = 0.57735; t_{0.975, 2} = 4.302653
    mean, low, high = stats.mean_ci([1.0, 2.0, 3.0])
    half = 4.302653 * 1 / math.sqrt(3)
    assert_allclose([mean, low, high], [2.0, 2 - half, 2 + half], rtol=1e-6)


def test_mean_ci_of_one_value_has_no_bounds_and_ignores_nan():
    mean, low, high = stats.mean_ci([0.4, np.nan])
    assert mean == 0.4 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in stats.mean_ci([]))


def test_mean_ci_by_group_is_the_student_t_interval_of_each_group():
    # ("a", 1): 1, 2, 3 as above; ("a", 2): 4, 6 (mean 5, s = sqrt 2, t_{0.975, 1} = 12.706205);
    # ("b", 1): 7 and a NaN (n = 1, no bounds); a row with a NaN key is in no group.
    table = pd.DataFrame(
        {
            "method": ["b", "a", "a", "a", "a", "a", "b", None],
            "beta": [1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0],
            "value": [7.0, 4.0, 1.0, 2.0, 6.0, 3.0, np.nan, 9.0],
        }
    )
    got = stats.mean_ci_by_group(table, ["method", "beta"], "value")
    assert list(got.columns) == ["method", "beta", "n", "mean", "ci_low", "ci_high", "sd"]
    assert list(zip(got["method"], got["beta"], got["n"], strict=True)) == [
        ("a", 1, 3),
        ("a", 2, 2),
        ("b", 1, 1),
    ]
    half_1, half_2 = 4.302653 / math.sqrt(3), 12.706205 * math.sqrt(2) / math.sqrt(2)
    assert_allclose(got["mean"], [2.0, 5.0, 7.0])
    assert_allclose(got["ci_low"][:2], [2 - half_1, 5 - half_2], rtol=1e-6)
    assert_allclose(got["ci_high"][:2], [2 + half_1, 5 + half_2], rtol=1e-6)
    assert_allclose(got["sd"][:2], [1.0, math.sqrt(2)])
    assert (
        math.isnan(got["ci_low"][2]) and math.isnan(got["ci_high"][2]) and math.isnan(got["sd"][2])
    )


def test_pareto_front_keeps_points_nothing_beats():
    #        kl:  0.0  1.0  0.5  2.0  1.0  3.0
    #    reward:  0.1  0.5  0.3  0.4  0.2  0.9
    # by kl: (0,.1) front; (.5,.3) front; (1,.5) front; (1,.2) beaten; (2,.4) beaten; (3,.9) front
    kl = [0.0, 1.0, 0.5, 2.0, 1.0, 3.0]
    reward = [0.1, 0.5, 0.3, 0.4, 0.2, 0.9]
    assert stats.pareto_front(kl, reward).tolist() == [0, 2, 1, 5]


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_gao_fit_recovers_the_parameters_of_its_form(form):
    d = np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    gain = stats.GAO_FORMS[form](d, 0.3, 0.05)
    assert_allclose(stats.fit_gao(form, d, gain), (0.3, 0.05), rtol=1e-6)


def test_gao_forms_are_the_papers_formulas():
    # d = 2, alpha = 1, beta = 0.25: bon 2 * (1 - 0.5) = 1; rl 2 * (1 - 0.25 log 2) = 1.65343
    assert stats.bon_form(2.0, 1.0, 0.25) == pytest.approx(1.0)
    assert stats.rl_form(2.0, 1.0, 0.25) == pytest.approx(2 * (1 - 0.25 * math.log(2)))


def test_method_colours_are_fixed_for_known_methods_and_stable_for_others():
    assert style.method_colors(["ipo", "dpo"])["dpo"] == style.method_colors(["dpo"])["dpo"]
    colors = style.method_colors(["zeta", "dpo", "alpha"])
    assert colors["alpha"] == style.EXTRA_COLORS[0] and colors["zeta"] == style.EXTRA_COLORS[1]
    names = sorted(f"m{i}" for i in range(20))  # more methods than extra colours: they cycle
    many = style.method_colors(names)
    extras = style.EXTRA_COLORS
    assert [many[n] for n in names] == [extras[i % len(extras)] for i in range(len(names))]


def test_every_registered_method_has_its_own_colour():
    assert set(style.METHOD_COLORS) == set(METHODS.names())
    # CIE76 distance in CIELAB (D65): two lines on one figure must not read as one colour
    # (dpo and rloo_gold once drew in two blues 3 units apart)
    lab = {m: _cielab(c) for m, c in style.METHOD_COLORS.items()}
    lab[style.OPTIMAL_COLOR] = _cielab(style.OPTIMAL_COLOR)
    closest = min((float(np.linalg.norm(lab[a] - lab[b])), a, b) for a in lab for b in lab if a < b)
    assert closest[0] > 25, closest


def _cielab(colour: str) -> np.ndarray:
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    srgb_to_xyz = np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
    )
    xyz = srgb_to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_markdown_and_latex_render_mean_and_half_width():
    table = pd.DataFrame(
        {
            "dataset": ["toy_set"],
            "method": ["dpo"],
            "beta": [0.1],
            "n": [2],
            "eval/kl": [5.5],
            "eval/kl_ci_low": [-0.85],
            "eval/kl_ci_high": [11.85],
            "winrate/gold/vs_reference": [0.7],
            "winrate/gold/vs_reference_ci_low": [np.nan],
            "winrate/gold/vs_reference_ci_high": [np.nan],
        }
    )
    header, cells, n_labels = tables.formatted(table)
    assert header == ["dataset", "method", "beta", "n", "KL", "win rate gold vs reference"]
    assert cells == [["toy_set", "dpo", "0.1", "2", "5.500 ± 6.350", "0.700"]]
    md = tables.markdown(header, cells, n_labels)
    assert md.splitlines()[2] == "| toy_set | dpo | 0.1 | 2 | 5.500 ± 6.350 | 0.700 |"
    tex = tables.latex(header, cells, n_labels)
    assert r"\begin{tabular}{llllrr}" in tex
    assert r"toy\_set & dpo & 0.1 & 2 & 5.500 $\pm$ 6.350 & 0.700 \\" in tex


def test_a_markdown_cell_never_breaks_its_row():
    lines = tables.markdown_lines(["a|b", "n"], [["x | y\nz", "1"]], "lr")
    assert lines == ["| a\\|b | n |", "| :-- | --: |", "| x \\| y z | 1 |"]


def test_file_name_parts_are_safe():
    assert safe("beta search/v2") == "beta-search-v2"
    assert safe("exact") == "exact"


def test_a_rerun_of_the_same_name_replaces_the_earlier_run(tracking):
    import mlflow

    from analysis.load import load_runs

    mlflow.set_experiment("reruns")
    for value in (0.1, 0.7):  # `make demo` twice: the same experiment names again
        with mlflow.start_run(run_name="dpo-b0.1", tags={"method": "dpo", "dataset": "sentiment"}):
            mlflow.log_metric("eval/gold/reward", value)
    with mlflow.start_run(run_name="dpo-b0.5", tags={"method": "dpo", "dataset": "sentiment"}):
        mlflow.log_metric("eval/gold/reward", 0.3)
    mlflow.flush_async_logging()
    data = load_runs(tracking, ["reruns"])
    assert data.superseded == 1
    assert sorted(
        zip(data.runs["run_name"], data.runs["metrics.eval/gold/reward"], strict=True)
    ) == [
        ("dpo-b0.1", 0.7),
        ("dpo-b0.5", 0.3),
    ]


def test_sweep_trials_are_left_out_of_the_study_figures():
    runs = pd.DataFrame(
        {
            "run_id": ["study", "t1", "t2"],
            "tags.role": [np.nan, "trial", "trial"],
            "tags.sweep": [np.nan, "s1", "s2"],
        }
    )
    history = pd.DataFrame({"run_id": ["study", "t1"], "key": "eval/kl", "step": 0, "value": 0.0})
    data = RunData(runs, history)
    assert data.studies().runs["run_id"].tolist() == ["study"]
    assert data.studies().history["run_id"].tolist() == ["study"]
    assert data.sweep_trials("s1").runs["run_id"].tolist() == ["t1"]


def test_front_advantage_is_the_mean_lead_over_the_shared_kl_range():
    # a's best reward: 0 below KL 1, 1 from 1, 2 at 2; b's: 0 below 2, 1 at 2.
    # budgets 0, .5, 1, 1.5, 2: leads 0, 0, 1, 1, 1 -> 0.6
    lead = stats.front_advantage([0, 1, 2], [0, 1, 2], [0, 2], [0, 1], n_grid=5)
    assert lead == pytest.approx(0.6)
    assert math.isnan(stats.front_advantage([0, 1], [0, 1], [2, 3], [0, 1]))  # no overlap


def test_gao_fit_intervals_are_the_least_squares_t_intervals():
    d = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    gain = d * (0.3 - 0.05 * d) + np.array([0.01, -0.02, 0.015, 0.0, -0.01, 0.005])
    design = np.column_stack([d, -(d**2)])  # gain = alpha d - beta d^2
    coef, residual, *_ = np.linalg.lstsq(design, gain, rcond=None)
    variance = residual[0] / (len(d) - 2) * np.linalg.inv(design.T @ design)
    half = 2.776445 * np.sqrt(np.diag(variance))  # t_{0.975, 4}
    fit = stats.fit_gao_ci("bon", d, gain)
    assert_allclose([fit["alpha"], fit["beta"]], coef, rtol=1e-6)
    assert_allclose([fit["alpha_ci_low"], fit["beta_ci_low"]], coef - half, rtol=1e-5)
    assert_allclose([fit["alpha_ci_high"], fit["beta_ci_high"]], coef + half, rtol=1e-5)
    assert fit["n"] == 6


def test_training_curves_leave_out_a_method_that_trains_nothing():
    """Best-of-n logs its evaluation at step 0 only: no line, and no legend entry without one."""
    from analysis.figures import curves

    runs = pd.DataFrame(
        {
            "run_id": ["d", "b"],
            "run_name": ["dpo", "bon"],
            "method": ["dpo", "bon"],
            "beta": [0.1, 4.0],
            "seed": [0.0, 0.0],
            "dataset": "sentiment",
            "metrics.eval/kl": [1.5, 0.7],
        }
    )
    history = pd.DataFrame(
        [("d", "eval/kl", 0, 0.0), ("d", "eval/kl", 10, 1.5), ("b", "eval/kl", 0, 0.7)],
        columns=["run_id", "key", "step", "value"],
    )
    plot = curves.plot(RunData(runs, history), {"dpo": "C0", "bon": "C1"})
    (ax,) = plot.figure.axes
    assert [line.get_gid() for line in ax.lines] == ["eval/kl:dpo:0.1"]
    assert [t.get_text() for t in plot.figure.legends[0].get_texts()] == ["dpo"]
