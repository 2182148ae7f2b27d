"""results/paper/: every study's figures and tables, and REPORT.md with one row per claim.

Reads the MLflow experiments named in analysis/paper/__init__.py, and nothing else (the sweep's
history and importances come from its trials' MLflow runs), draws each study's figures as
`harness figures` does, measures each claim with its `claims_*` function and writes REPORT.md from those
numbers and the words in claims.toml.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from analysis import tables
from analysis.load import AnalysisError, RunData, experiment_names, load_runs
from analysis.paper import STUDIES, SWEEP, claims_exact, claims_sentiment, claims_sweep
from analysis.paper.markdown import write_report
from analysis.paper.verdicts import Finding, not_measured
from analysis.report import PER_DATASET, Report, draw_sweep
from analysis.style import method_colors
from harness.infra.databases import mask

CLAIMS_FILE = Path(__file__).with_name("claims.toml")
CLAIM_FIELDS = ("key", "title", "claim", "source", "study", "figures", "notes")
FINDERS = {
    "frontier": claims_sentiment.frontier,
    "temperature": claims_sentiment.temperature,
    "deterministic": claims_exact.deterministic,
    "frontier_gap": claims_exact.frontier_gap,
    "overoptimization": claims_sentiment.overoptimization,
    "beta_sensitivity": None,  # needs the sweep's importances too: see measure()
    "kto_unpaired": claims_sentiment.kto_unpaired,
    "online_vs_offline": claims_sentiment.online_vs_offline,
    "best_of_n_vs_rl": claims_sentiment.best_of_n_vs_rl,
    "online_vs_offline_exact": claims_exact.online_vs_offline_exact,
}


NO_RUNS = RunData(
    pd.DataFrame(columns=["run_id", "experiment", "method", "dataset", "beta", "seed", "seconds"]),
    pd.DataFrame(columns=["run_id", "key", "step", "value"]),
)


INVOCATIONS_FILE = "make_paper.json"  # every `make paper` on this report folder, oldest first


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class Invocation:
    """What one `make paper` did: its wall-clock time, runs trained and runs skipped, and the
    store (masked) it trained into."""

    seconds: float
    trained: int
    skipped: int
    finished: str = field(default_factory=utc_now)
    store: str = ""


def recorded_invocations(out: Path, log=print) -> list[Invocation]:
    """Every `make paper` invocation recorded in `out`; none when the record is absent or broken
    (said in one line: the report then states no wall-clock time rather than a wrong one)."""
    path = out / INVOCATIONS_FILE
    if not path.exists():
        return []
    try:
        return [Invocation(**entry) for entry in json.loads(path.read_text())]
    except (ValueError, TypeError) as err:
        log(f"{path} is unreadable ({err}); the report states no make paper time")
        return []


def record_invocation(out: Path, invocation: Invocation, log=print) -> list[Invocation]:
    """Append `invocation` to the record in `out` (written atomically); returns all of them."""
    invocations = [*recorded_invocations(out, log), invocation]
    path = out / INVOCATIONS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([asdict(i) for i in invocations], indent=1) + "\n")
    tmp.replace(path)
    return invocations


def invocations_of(store: str, invocations: list[Invocation]) -> list[Invocation]:
    """Those that trained into `store`: a report folder regenerated from another store (or
    recorded before stores were) must not add that store's wall-clock time to this one's."""
    return [i for i in invocations if i.store == store]


def read_claims(path: Path = CLAIMS_FILE) -> list[dict]:
    """The [[claim]] entries, checked: every field present, one per finder, known studies."""
    with open(path, "rb") as handle:
        claims = tomllib.load(handle).get("claim", [])
    for i, claim in enumerate(claims, 1):
        missing = [f for f in CLAIM_FIELDS if f not in claim]
        if missing:
            raise AnalysisError(f"{path}: claim {i} lacks {', '.join(missing)}")
        if claim["key"] not in FINDERS:
            raise AnalysisError(
                f"{path}: claim {i} has unknown key {claim['key']!r}; known: {', '.join(FINDERS)}"
            )
        if claim["study"] not in STUDIES:
            raise AnalysisError(
                f"{path}: claim {claim['key']!r} names unknown study {claim['study']!r}"
            )
    absent = set(FINDERS) - {c["key"] for c in claims}
    if absent:
        raise AnalysisError(f"{path}: no words for claim(s) {', '.join(sorted(absent))}")
    return claims


def generate(
    uri: str, out: Path, invocation: Invocation | None = None, log=print
) -> dict[str, Finding]:
    """Write results/paper (figures, tables, REPORT.md) from the studies' runs at `uri`."""
    claims = read_claims()
    present = sorted(experiment_names(uri) & set(STUDIES))
    data = load_runs(uri, present) if present else NO_RUNS
    log(f"read {len(data.runs)} finished run(s) of {len(present)} study(ies) from {mask(uri)}")
    report = Report(Path(out), log)
    report.out.mkdir(parents=True, exist_ok=True)
    if invocation is not None:
        invocation = replace(invocation, store=mask(uri))
        invocations = record_invocation(report.out, invocation, log)
    else:  # regenerating: the times of the `make paper` runs that trained these runs
        invocations = recorded_invocations(report.out, log)
    invocations = invocations_of(mask(uri), invocations)
    studies = draw_studies(report, data)
    findings = {c["key"]: measure(c, studies[c["study"]], report) for c in claims}
    changes = changed_verdicts(report.out, claims, findings)
    for claim in claims:
        findings[claim["key"]].figures = [s for s in claim["figures"] if s in report.plots]
    write_numbers(report, claims, findings)
    report.files.append(
        write_report(report.out, claims, findings, studies, uri, invocations, changes)
    )
    log(f"wrote {report.out / 'REPORT.md'}: {len(claims)} claims, {len(report.plots)} figures")
    return findings


def draw_studies(report: Report, data: RunData) -> dict[str, RunData]:
    """Each study's figures and summary table; returns each study's runs."""
    colors = method_colors(data.runs["method"])
    studies = {name: data.select(data.runs["experiment"] == name) for name in STUDIES}
    for name, study in studies.items():
        if name == SWEEP or study.runs.empty:
            continue
        for kind, plot in PER_DATASET.items():
            report.draw(f"{kind}_{name}", plot, study, colors)
        report.write_table(f"summary_{name}", tables.summary(study))
    # The latest sweep in the study's experiment: a changed sweep definition is a new study.
    sweep_rows = data.sweeps[data.sweeps["experiment"] == SWEEP].sort_values("start_time")
    if len(sweep_rows):
        latest = sweep_rows.iloc[-1]
        studies[SWEEP] = studies[SWEEP].sweep_trials(str(latest["sweep"]))
        draw_sweep(report, data, latest, colors, f"sweep_{SWEEP}")
    return studies


def write_numbers(report: Report, claims: list[dict], findings: dict[str, Finding]) -> None:
    """claim_<key>.csv (every number behind a claim) and claims.csv (one row per claim)."""
    for claim in claims:
        table = findings[claim["key"]].table
        if not table.empty:
            path = report.out / f"claim_{claim['key']}.csv"
            table.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
            report.files.append(path)
    overview = pd.DataFrame(
        [
            {"claim": i, "key": c["key"], "title": c["title"]}
            | {k: getattr(findings[c["key"]], k) for k in ("verdict", "measured", "why")}
            for i, c in enumerate(claims, 1)
        ]
    )
    overview.to_csv(report.out / "claims.csv", index=False, lineterminator="\n")
    report.files.append(report.out / "claims.csv")


def changed_verdicts(out: Path, claims: list[dict], findings: dict[str, Finding]) -> list[str]:
    """One line per claim whose verdict differs from the previous report's claims.csv in `out`
    (rules or runs changed), with the new rule's reason; empty without a previous report."""
    path = out / "claims.csv"
    if not path.exists():
        return []
    before = pd.read_csv(path).set_index("key")["verdict"].to_dict()
    lines = []
    for i, claim in enumerate(claims, 1):
        old, new = before.get(claim["key"]), findings[claim["key"]]
        if old is not None and old != new.verdict:
            lines.append(f"Claim {i} ({claim['title']}): {old} -> {new.verdict}. {new.why}")
    return lines


def measure(claim: dict, study: RunData, report: Report) -> Finding:
    if study.runs.empty:
        return not_measured(f"the study {claim['study']!r} has no finished runs")
    if claim["key"] == "beta_sensitivity":
        importances = report.plots.get(f"sweep_{SWEEP}_importances")
        return claims_sweep.beta_sensitivity(study, importances.data if importances else None)
    return FINDERS[claim["key"]](study)
