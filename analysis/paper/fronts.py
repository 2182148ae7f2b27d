"""Front leads at matched KL, shared by the claims that set one method's reward-KL front
against another's (claims 1, 8, 9 on the sentiment world; claim 10 on the exact world)."""

from __future__ import annotations

import pandas as pd

from analysis.compare import Protocol, front_leads
from analysis.load import RunData
from analysis.paper.verdicts import Finding, above, ci_text, decide, not_measured, over_seeds
from harness.config.metrics import EVAL_GOLD_REWARD, EVAL_KL


def front_lead_table(
    data: RunData, pairs, leads=front_leads, kl: str = EVAL_KL, metric: str = EVAL_GOLD_REWARD
) -> pd.DataFrame:
    """Per (method, baseline) pair and common seed: the `metric` lead of the method's front
    over the baseline's at matched `kl`, both fronts from the same number of runs
    (analysis.compare, the comparison protocol; `leads`: how a seed's lead is measured)."""
    return pd.concat(
        [
            leads(
                data, method, baseline, kl, Protocol(baseline=method, metric=metric, kl=kl)
            ).assign(method=method, baseline=baseline)
            for method, baseline in pairs
        ],
        ignore_index=True,
    )[["method", "baseline", "seed", "lead"]]


def every_front_ahead(
    data: RunData, pairs, leads=front_leads, kl: str = EVAL_KL, metric: str = EVAL_GOLD_REWARD
) -> Finding:
    """Reproduced when each (method, baseline) pair's lead interval lies above zero."""
    per_seed = front_lead_table(data, pairs, leads, kl, metric)
    missing = [f"{m} and {b}" for m, b in pairs if not _has_pair(per_seed, m, b)]
    if missing:
        return not_measured(f"no seed with both {' or '.join(missing)} logging {kl}, {metric}")
    summary = over_seeds(per_seed, ["method", "baseline"], "lead")
    checks = {
        f"{r['method']}'s front above {r['baseline']}'s ({ci_text(r, signed=True)})": above(r)
        for _, r in summary.iterrows()
    }
    verdict, why = decide(checks)
    measured = "; ".join(
        f"{r['method']} over {r['baseline']}: {ci_text(r, signed=True)}"
        for _, r in summary.iterrows()
    )
    return Finding(verdict, why, measured, summary.assign(quantity=f"front lead ({metric})"))


def _has_pair(per_seed: pd.DataFrame, method: str, baseline: str) -> bool:
    return bool(((per_seed["method"] == method) & (per_seed["baseline"] == baseline)).any())
