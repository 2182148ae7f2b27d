"""Every figure and table from a small MLflow store filled with real logged runs.

Experiment `tiny` holds real harness runs on the sentiment world. The other experiments are
logged directly with MLflow and Optuna under the harness's metric names, to control their
values: `scored` (win rates per temperature, several betas and seeds), `exact` (exact-world
metrics, deterministic labels, the optimal-frontier artifact) and `sweeps` (a sweep parent run
and its Optuna study). The tests compare what each figure drew with what MLflow holds.
"""

from __future__ import annotations

import json
import math

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from numpy.testing import assert_allclose

from analysis.figures.sweeps import study_from_runs
from analysis.load import load_runs
from analysis.report import generate
from analysis.stats import pareto_front
from harness.config.space import IntUniform, LogUniform, Sweep, Uniform, sample_params
from harness.config.spec import EvalSpec, Experiment, TrainSpec
from harness.infra.stores import use_tracking
from harness.run.recipe import run_experiment

pytestmark = pytest.mark.slow

TEMPERATURES = (0.25, 0.5, 1.0)
ALPHA, GAO_BETA = 0.3, 0.05  # win rate = 0.5 + d (ALPHA - GAO_BETA d), d = sqrt(KL)
SWEEP_OUTLIER = 1000.0  # the KL of every sweep trial run
# The sweep whose parent run `_sweep` logs, as `harness sweep` does: its space by describe().
BETA_SEARCH = Sweep(
    name="beta-search",
    base=Experiment(method="dpo", beta=0.1, dataset="synthetic"),
    space={
        "beta": LogUniform(0.01, 1.0),
        "train.lr": Uniform(1e-5, 1e-3),
        "train.steps": IntUniform(10, 40),
    },
    sampler="random",
)
FRONTIER_CSV = "beta,kl,reward\n1.0,0.1,0.2\n0.3,0.6,0.5\n0.1,2.0,0.8\n"


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """URI of the filled store (and its Optuna storage URL)."""
    folder = tmp_path_factory.mktemp("figures-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    storage = f"sqlite:///{folder / 'optuna.db'}"
    use_tracking(uri, "tiny")
    _real_runs()
    use_tracking(uri, "scored")
    _scored_runs()
    use_tracking(uri, "exact")
    _exact_runs()
    use_tracking(uri, "sweeps")
    _sweep(storage)
    mlflow.flush_async_logging()
    return {"uri": uri, "storage": storage}


def _real_runs():
    train = TrainSpec(steps=4, batch_size=4, eval_every=2, log_every=2, save_policy=False)
    evals = EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8)
    for method, beta in [("dpo", 0.1), ("dpo", 0.5), ("ipo", 0.1)]:
        exp = Experiment(method=method, beta=beta, dataset="sentiment", train=train, eval=evals)
        run_experiment(exp, log=lambda line: None)


def _run(method, beta, dataset, seed=0, params=None, tags=None):
    """A run opened the way the harness opens one: tags, dotted params."""
    name = f"{method}-b{beta:g}-s{seed}"
    run_tags = {"method": method, "dataset": dataset, "experiment": name, **(tags or {})}
    run = mlflow.start_run(run_name=name, tags=run_tags)
    mlflow.log_params(
        {
            "method": method,
            "beta": beta,
            "dataset": dataset,
            "name": name,
            "train.seed": seed,
            **(params or {}),
        }
    )
    return run


def scored_kl(beta, seed):
    return (0.5 + 0.1 * seed) / beta


def scored_winrate(kl):
    d = math.sqrt(kl)
    return 0.5 + d * (ALPHA - GAO_BETA * d)


def _scored_runs():
    """dpo and ipo at four betas, two seeds; final metrics and win rates logged at step 10."""
    for method in ("dpo", "ipo"):
        for beta in (0.05, 0.1, 0.3, 1.0):
            for seed in (0, 1):
                kl = scored_kl(beta, seed) * (1 if method == "dpo" else 0.5)
                with _run(method, beta, "synthetic", seed):
                    mlflow.log_metrics({"eval/kl": 0.0, "eval/gold/reward": 0.0}, step=0)
                    metrics = {
                        "eval/kl": kl,
                        "eval/gold/reward": 0.1 * math.sqrt(kl) + seed,
                        "eval/rewards/accuracies": 0.6 + 0.1 * seed,
                    }
                    winrate = scored_winrate(kl)
                    metrics |= {
                        "winrate/gold/vs_reference": winrate,
                        "winrate/gold/vs_reference_ci_low": winrate - 0.05,
                        "winrate/gold/vs_reference_ci_high": winrate + 0.05,
                    }
                    for t in TEMPERATURES:
                        name = f"winrate/gold/vs_reference/t{t:g}"
                        value = winrate - 0.1 * (1 - t) + 0.01 * seed
                        metrics |= {
                            name: value,
                            f"{name}_ci_low": value - 0.04,
                            f"{name}_ci_high": value + 0.06,
                        }
                        if seed == 0:  # a second panel, one seed: drawn with its logged CI
                            name = f"winrate/rm/vs_chosen/t{t:g}"
                            metrics |= {
                                name: 0.4 + t / 10,
                                f"{name}_ci_low": 0.3 + t / 10,
                                f"{name}_ci_high": 0.55 + t / 10,
                            }
                    mlflow.log_metrics(metrics, step=10)


def exact_kl(method, step):
    return 0.02 * step if method == "dpo" else 0.3 * (1 - math.exp(-step / 10))


def _exact_runs():
    """Exact-world runs with deterministic labels: eval/kl_exact grows (dpo) or levels (ipo)."""
    for method in ("dpo", "ipo"):
        with _run(method, 0.1, "exact", params={"data.labels": "deterministic"}):
            mlflow.log_text(FRONTIER_CSV, "frontier/optimal_frontier.csv")
            for step in range(0, 41, 10):
                kl = exact_kl(method, step)
                mlflow.log_metrics(
                    {
                        "eval/kl_exact": kl,
                        "eval/gold/reward_exact": math.sqrt(kl),
                        "eval/kl": kl + 0.01,
                    },
                    step=step,
                )


def _sweep(storage):
    """A sweep as `harness sweep` logs it: a parent run (space, direction) and a nested run per
    trial whose tags carry the trial's number, state, value and params. The Optuna study in
    `storage` is what the figures must reproduce; the parent names a database nobody can reach.
    """
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(
        study_name="beta-search", storage=storage, sampler=sampler, direction="maximize"
    )

    def objective(trial):
        params = sample_params(BETA_SEARCH, trial)
        return (
            -((math.log10(params["beta"]) + 1) ** 2)
            + 0.1 * params["train.lr"]
            + 0.001 * params["train.steps"]
        )

    study.optimize(objective, n_trials=8)
    unreachable = "postgresql://harness:***@db.invalid:5432/optuna"
    tags = {"role": "sweep_parent", "sweep": "beta-search", "optuna_storage": unreachable}
    space = BETA_SEARCH.describe()
    with mlflow.start_run(run_name="beta-search", tags=tags) as parent:
        mlflow.log_params({**space, "direction": "maximize"})
    for trial in study.trials:
        trial_tags = {
            "role": "trial",
            "sweep": "beta-search",
            "trial": str(trial.number),
            "trial_state": "COMPLETE",
            "trial_value": repr(trial.value),
            "trial_params": json.dumps(trial.params),
            "mlflow.parentRunId": parent.info.run_id,
            "method": "dpo",
            "dataset": "synthetic",
        }
        # On the dataset of the scored runs: drawn in the sweep's own beta figure, never in the
        # dataset's figures or the summary table (SWEEP_OUTLIER would show).
        with mlflow.start_run(run_name=f"beta-search-t{trial.number}-s0", tags=trial_tags):
            mlflow.log_params({**trial.params, "method": "dpo", "train.seed": 0})
            metrics = {"eval/kl": SWEEP_OUTLIER, "eval/gold/reward": trial.params["beta"]}
            mlflow.log_metrics(metrics, step=10)
    with mlflow.start_run(run_name="lost", tags={**tags, "sweep": "lost"}):
        pass


@pytest.fixture(scope="session")
def report(store, tmp_path_factory):
    lines = []
    out = tmp_path_factory.mktemp("figures-all")
    result = generate(store["uri"], None, out, log=lines.append)
    result.lines = lines
    return result


def history(uri, experiment, key):
    """{(method, beta): [(step, value), ...]} straight from MLflow."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        points = client.get_metric_history(run.info.run_id, key)
        key_ = (run.data.tags["method"], float(run.data.params["beta"]))
        out.setdefault(key_, []).extend(sorted((m.step, m.value) for m in points))
    return out


def finals(uri, experiment):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [
        (
            run.data.tags["method"],
            float(run.data.params["beta"]),
            int(run.data.params["train.seed"]),
            run.data.metrics,
        )
        for run in client.search_runs([exp.experiment_id])
    ]


def by_gid(ax, gid):
    found = [a for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {[a.get_gid() for a in [*ax.lines, *ax.collections]]}"
    return found[0]


def assert_points(drawn, logged):
    """The same (x, y) points, in any order."""
    assert_allclose(np.array(sorted(map(tuple, drawn))), np.array(sorted(logged)))


def test_every_figure_and_table_is_written(report):
    expected = [
        "frontier_sentiment",
        "training_curves_sentiment",
        "frontier_synthetic",
        "winrate_temperature_synthetic",
        "beta_sensitivity_synthetic",
        "overoptimization_synthetic",
        "frontier_exact",
        "deterministic_kl_exact",
        "sweep_beta-search_history",
        "sweep_beta-search_importances",
        "sweep_beta-search_parallel",
        "sweep_beta-search_beta",
    ]
    for stem in expected:
        assert stem in report.plots
        for suffix in (".png", ".pdf"):
            assert (report.out / f"{stem}{suffix}").stat().st_size > 1000
    for suffix in (".csv", ".md", ".tex"):
        assert (report.out / f"summary{suffix}").exists()
    assert (report.out / "overoptimization_synthetic_fit.csv").exists()
    assert f"in {report.out}/" in report.lines[-1]


def test_missing_data_is_skipped_with_a_note(report):
    assert report.skipped["winrate_temperature_sentiment"] == (
        "no winrate/{judge}/vs_{baseline}/t{T} metrics"
    )
    note = (
        "skipped overoptimization_sentiment: no run logs both winrate/gold/vs_reference and eval/kl"
    )
    assert note in report.lines
    assert "deterministic_kl_sentiment" in report.skipped
    assert "overoptimization_exact" in report.skipped
    assert report.skipped["sweep_lost"] == "no finished trial runs in MLflow"
    assert not (report.out / "winrate_temperature_sentiment.png").exists()


def test_frontier_plots_every_logged_evaluation_of_the_real_runs(store, report):
    ax = report.plots["frontier_sentiment"].figure.axes[0]
    kl = history(store["uri"], "tiny", "eval/kl")
    gold = history(store["uri"], "tiny", "eval/gold/reward")
    assert sorted(kl) == [("dpo", 0.1), ("dpo", 0.5), ("ipo", 0.1)]
    for method in ("dpo", "ipo"):
        logged = [
            (k[1], g[1])
            for key in sorted(kl)
            if key[0] == method
            for k, g in zip(kl[key], gold[key], strict=True)
        ]
        assert_points(by_gid(ax, f"points:{method}").get_offsets(), logged)
        front = np.array(logged)[pareto_front(*np.array(logged).T)]
        line = by_gid(ax, f"front:{method}")
        assert_allclose(np.c_[line.get_xdata(), line.get_ydata()], front)
    assert len(logged) == 3  # steps 0, 2 and 4 of one run
    assert "sampled KL" in ax.get_xlabel() and ax.get_ylabel()


def test_training_curves_are_the_logged_histories(store, report):
    fig = report.plots["training_curves_sentiment"].figure
    keys = [
        "eval/rewards/chosen",
        "eval/rewards/rejected",
        "eval/rewards/margins",
        "eval/rewards/accuracies",
        "eval/kl",
    ]
    assert len(fig.axes) == len(keys)
    for ax, key in zip(fig.axes, keys, strict=True):
        for (method, beta), points in history(store["uri"], "tiny", key).items():
            line = by_gid(ax, f"{key}:{method}:{beta:g}")
            assert line.get_xdata().tolist() == [s for s, _ in points] == [0, 2, 4]
            assert_allclose(line.get_ydata(), [v for _, v in points])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["dpo β=0.1", "dpo β=0.5", "ipo"]


def test_one_colour_per_method_across_figures(report):
    colors = {}
    for stem in ("frontier_synthetic", "winrate_temperature_synthetic", "frontier_sentiment"):
        for artist in report.plots[stem].figure.axes[0].lines:
            gid = artist.get_gid() or ""
            for method in ("dpo", "ipo"):
                if f":{method}" in gid:
                    colors.setdefault(method, set()).add(artist.get_color())
    assert colors == {"dpo": {"#0072B2"}, "ipo": {"#D55E00"}}


def test_winrate_against_temperature_is_the_seed_mean_or_the_logged_ci(store, report):
    plot = report.plots["winrate_temperature_synthetic"]
    gold_ax, rm_ax = plot.figure.axes  # panels sorted by judge: gold, then rm
    runs = finals(store["uri"], "scored")
    for t_index, t in enumerate(TEMPERATURES):
        name = f"winrate/gold/vs_reference/t{t:g}"
        seeds = [m[name] for method, beta, _, m in runs if (method, beta) == ("dpo", 0.3)]
        assert len(seeds) == 2
        line = by_gid(gold_ax, "gold/reference:dpo:0.3")
        assert line.get_xdata()[t_index] == t
        assert line.get_ydata()[t_index] == pytest.approx(np.mean(seeds))
    one = [m for method, beta, seed, m in runs if (method, beta, seed) == ("ipo", 1.0, 0)][0]
    row = plot.data.query(
        "judge == 'rm' and method == 'ipo' and beta == 1.0 and temperature == 0.5"
    )
    assert row[["n", "winrate", "ci_low", "ci_high"]].values.tolist()[0] == pytest.approx(
        [
            1,
            one["winrate/rm/vs_chosen/t0.5"],
            one["winrate/rm/vs_chosen/t0.5_ci_low"],
            one["winrate/rm/vs_chosen/t0.5_ci_high"],
        ]
    )
    assert_allclose(by_gid(rm_ax, "rm/chosen:ipo:1").get_ydata(), [0.425, 0.45, 0.5])


def test_beta_sensitivity_is_seed_means_with_t_intervals(report):
    plot = report.plots["beta_sensitivity_synthetic"]
    assert [ax.get_ylabel() for ax in plot.figure.axes] == [
        "gold reward",
        "KL to ref. [nats]",
        "gold win rate\nvs reference",
    ]
    # dpo at beta 0.1: KL of seeds 0 and 1 = 0.5 / 0.1 = 5 and 0.6 / 0.1 = 6: mean 5.5,
    # s = 0.7071, s / sqrt(2) = 0.5, t_{0.975, 1} = 12.7062: interval 5.5 -+ 6.3531
    row = plot.data.query("metric == 'eval/kl' and method == 'dpo' and beta == 0.1").iloc[0]
    assert [row["n"], row["mean"]] == [2, pytest.approx(5.5)]
    assert [row["ci_low"], row["ci_high"]] == pytest.approx([5.5 - 6.3531, 5.5 + 6.3531], abs=1e-4)
    line = by_gid(plot.figure.axes[1], "KL to ref. [nats]:dpo")
    means = [np.mean([scored_kl(b, s) for s in (0, 1)]) for b in (0.05, 0.1, 0.3, 1.0)]
    assert_allclose(line.get_xdata(), [0.05, 0.1, 0.3, 1.0])
    assert_allclose(line.get_ydata(), means)
    assert plot.figure.axes[-1].get_xscale() == "log"


def test_overoptimization_fit_recovers_the_logged_law(store, report):
    plot = report.plots["overoptimization_synthetic"]
    ax = plot.figure.axes[0]
    runs = finals(store["uri"], "scored")
    logged = sorted(
        (math.sqrt(m["eval/kl"]), m["winrate/gold/vs_reference"])
        for method, _, _, m in runs
        if method == "ipo"
    )
    assert_points(by_gid(ax, "points:ipo").get_offsets(), logged)
    fit = plot.tables["fit"].set_index(["method", "form"])
    assert fit.loc[("dpo", "bon"), ["alpha", "beta"]].tolist() == pytest.approx([ALPHA, GAO_BETA])
    assert fit.loc[("ipo", "bon"), "n"] == 8
    line = by_gid(ax, "fit:dpo:bon")
    d = line.get_xdata()
    assert_allclose(line.get_ydata(), 0.5 + d * (ALPHA - GAO_BETA * d), atol=1e-8)
    written = pd.read_csv(report.out / "overoptimization_synthetic_fit.csv")
    assert written[["method", "form"]].values.tolist() == [
        ["dpo", "bon"],
        ["dpo", "rl"],
        ["ipo", "bon"],
        ["ipo", "rl"],
    ]


def test_exact_world_frontier_uses_exact_metrics_and_the_optimal_curve(report):
    ax = report.plots["frontier_exact"].figure.axes[0]
    optimal = by_gid(ax, "optimal")
    assert optimal.get_color() == "black"
    assert_allclose(
        np.c_[optimal.get_xdata(), optimal.get_ydata()], [[0.1, 0.2], [0.6, 0.5], [2.0, 0.8]]
    )
    expected = [(exact_kl("ipo", s), math.sqrt(exact_kl("ipo", s))) for s in range(0, 41, 10)]
    assert_points(by_gid(ax, "points:ipo").get_offsets(), expected)
    assert ax.get_xlabel().startswith("exact KL")


def test_deterministic_preferences_plot_exact_kl_against_step(report):
    ax = report.plots["deterministic_kl_exact"].figure.axes[0]
    for method in ("dpo", "ipo"):
        line = by_gid(ax, f"{method}:0.1")
        assert line.get_xdata().tolist() == [0, 10, 20, 30, 40]
        assert_allclose(line.get_ydata(), [exact_kl(method, s) for s in range(0, 41, 10)])


def test_sweep_figures_come_from_mlflow_and_match_the_optuna_study(store, report):
    study = optuna.load_study(study_name="beta-search", storage=store["storage"])
    ax = report.plots["sweep_beta-search_history"].figure.axes[0]
    values = [t.value for t in study.trials]
    drawn = next(c for c in ax.collections if len(c.get_offsets()) == len(values)).get_offsets()
    assert_allclose(drawn[:, 1], values)
    parallel = report.plots["sweep_beta-search_parallel"].data
    assert_allclose(parallel["value"], values)
    assert_allclose(parallel["beta"], [t.params["beta"] for t in study.trials])
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    table = report.plots["sweep_beta-search_importances"].data
    assert dict(zip(table["param"], table["importance"], strict=True)) == pytest.approx(importances)
    bars = report.plots["sweep_beta-search_importances"].figure.axes[0].patches
    assert sorted(b.get_width() for b in bars) == pytest.approx(sorted(importances.values()))


def test_a_sweep_rebuilt_from_mlflow_keeps_its_numeric_distributions(store):
    """The space read back from the parent run gives each trial Optuna's own distributions:
    Float (log for LogUniform) and Int, not one Categorical per value seen."""
    data = load_runs(store["uri"], ["sweeps"])
    parent = data.sweeps[data.sweeps["sweep"] == "beta-search"].iloc[0]
    rebuilt = study_from_runs(parent, data.runs)
    original = optuna.load_study(study_name="beta-search", storage=store["storage"])
    assert [t.distributions for t in rebuilt.trials] == [t.distributions for t in original.trials]
    kinds = {k: type(d).__name__ for k, d in rebuilt.trials[0].distributions.items()}
    assert kinds == {
        "beta": "FloatDistribution",
        "train.lr": "FloatDistribution",
        "train.steps": "IntDistribution",
    }
    assert rebuilt.trials[0].distributions["beta"].log


def test_sweep_trials_get_their_sweep_figure_not_the_datasets(report):
    for stem in ("frontier_synthetic", "beta_sensitivity_synthetic", "overoptimization_synthetic"):
        assert not report.plots[stem].data.isin([SWEEP_OUTLIER]).any().any(), stem
    assert SWEEP_OUTLIER not in report.tables["summary"]["eval/kl"].tolist()
    swept = report.plots["sweep_beta-search_beta"].data.query("metric == 'eval/kl'")
    assert swept["mean"].tolist() == [SWEEP_OUTLIER] * 8 and set(swept["n"]) == {1}


def test_summary_table_has_a_row_per_configuration_with_seed_cis(report):
    table = report.tables["summary"]
    synthetic = table[table["dataset"] == "synthetic"]
    assert len(synthetic) == 8 and set(synthetic["n"]) == {2}
    row = synthetic.query("method == 'dpo' and beta == 0.1").iloc[0]
    assert row["eval/kl"] == pytest.approx(5.5)
    assert row["eval/kl_ci_high"] == pytest.approx(5.5 + 6.3531, abs=1e-4)
    # accuracies 0.6 and 0.7: mean 0.65, s / sqrt(2) = 0.05, half-width 12.7062 * 0.05 = 0.6353
    assert row["eval/rewards/accuracies_ci_low"] == pytest.approx(0.65 - 0.6353, abs=1e-4)
    real = table[table["dataset"] == "sentiment"]
    assert real[["method", "beta", "n"]].values.tolist() == [
        ["dpo", 0.1, 1],
        ["dpo", 0.5, 1],
        ["ipo", 0.1, 1],
    ]
    markdown = (report.out / "summary.md").read_text()
    assert "5.500 ± 6.353" in markdown
    assert r"5.500 $\pm$ 6.353" in (report.out / "summary.tex").read_text()
    csv = pd.read_csv(report.out / "summary.csv")
    # nan_ok: the sweep's trial runs log no eval/kl
    assert csv["eval/kl"].tolist() == pytest.approx(
        table["eval/kl"].tolist(), rel=1e-5, nan_ok=True
    )


def test_cli_regenerates_identical_files_from_the_same_runs(store, report, tmp_path, capsys):
    from harness.commands.cli import main as harness_main

    args = [
        "--tracking-uri",
        store["uri"],
        "--experiment",
        "exact",
        "sweeps",
        "--out",
        str(tmp_path),
    ]
    assert harness_main(["figures", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("read 10 finished run(s) and 2 sweep(s)")
    assert "wrote deterministic_kl_exact.png, deterministic_kl_exact.pdf" in out
    assert f"in {tmp_path}/" in out[-1]
    figures = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".png", ".pdf"))
    assert len(figures) == 2 * 7  # exact: frontier, curves, deterministic KL; sweep: four
    for name in figures:  # the same runs drew these in the session's report: same bytes
        assert (tmp_path / name).read_bytes() == (report.out / name).read_bytes(), name


def test_command_errors_name_the_missing_experiment_or_store(store, tmp_path, capsys):
    from analysis.cli import main as analysis_main

    assert analysis_main(["--tracking-uri", store["uri"], "--experiment", "nope"]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err
    assert analysis_main(["--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err


@pytest.mark.parametrize("panels", [1, 5])
def test_a_long_legend_fits_the_column_without_squeezing_the_panels(panels):
    """20 variants with long names (a paper study's training curves): every label lies inside
    the figure and the panels keep their height."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from analysis.figures import legend_below, new_figure
    from analysis.style import paper_style

    labels = [
        f"{m} β={b:g}"
        for m in ("online_dpo_gold", "rloo_gold", "dpo", "bon")
        for b in (0.01, 0.03, 0.1, 0.3, 1)
    ]
    with paper_style():
        fig, axes = new_figure(panels, panel_height=1.05)
        for ax in axes:
            for i, label in enumerate(labels):
                ax.plot([0, 1], [0, i], label=label)
        legend_below(fig, axes[:1])
        canvas = FigureCanvasAgg(fig)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # constrained_layout warns when the panels collapse
            canvas.draw()
        renderer = canvas.get_renderer()
        figure_box = fig.bbox
        texts = fig.legends[0].get_texts()
        assert [t.get_text() for t in texts] == labels
        for text in texts:
            box = text.get_window_extent(renderer)
            assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1, text.get_text()
            assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1, text.get_text()
        for ax in axes:
            assert ax.get_window_extent(renderer).height / fig.dpi > 0.5, "a panel kept its height"
