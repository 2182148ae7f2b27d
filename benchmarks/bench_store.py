"""Creating a new SQLite tracking store: MLflow's migrations against the harness's verified copy.

Each side creates one new store in a process of its own, as a command does (imports done before
the clock starts): MLflow by `MlflowClient(uri).search_experiments()`, which runs its schema
migrations; the harness by `open_store(uri)`, which copies the empty store from the cache
(built before the first round) and checks it as every command does. The sides alternate,
`--repeats` times; the table gives the median seconds of each, the median of the paired ratios
with their range, and the load average before and after.

    python benchmarks/bench_store.py [--repeats 7]
writes results/benchmarks/store.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path("results/benchmarks/store.md")
CREATE = {
    "mlflow": "from mlflow.tracking import MlflowClient\n"
    "start = time.perf_counter()\n"
    "MlflowClient(uri).search_experiments()\n",
    "harness": "from harness.infra.stores import open_store\n"
    "start = time.perf_counter()\n"
    "open_store(uri, log=lambda line: None)\n",
}


def seconds(side: str, folder: Path) -> float:
    """Seconds one fresh process takes to create a new store, imports excluded."""
    code = (
        "import sys, time\n"
        f"uri = {f'sqlite:///{folder / side}.db'!r}\n"
        + CREATE[side]
        + "print(time.perf_counter() - start)\n"
    )
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"bench_store: the {side} side failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from harness.infra.store_template import empty_store

    empty_store(log=print)  # built once, as the first command on a machine builds it
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"mlflow": [], "harness": []}
    for repeat in range(args.repeats):
        for side in ("mlflow", "harness") if repeat % 2 == 0 else ("harness", "mlflow"):
            with tempfile.TemporaryDirectory() as folder:
                times[side].append(seconds(side, Path(folder)))
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{side} {values[-1]:.3f} s" for side, values in times.items()
        ))  # fmt: skip
    load_after = os.getloadavg()
    ratios = [h / m for h, m in zip(times["harness"], times["mlflow"], strict=True)]
    lines = [
        "# New SQLite tracking store: MLflow's migrations against the harness's copy",
        "",
        f"`python benchmarks/bench_store.py --repeats {args.repeats}` on {platform.node()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.",
        "Each figure: one new store created in a process of its own, imports excluded; "
        "the two sides alternate.",
        "",
        "| side | median s | min-max s |",
        "|---|---:|---:|",
    ]
    for side, values in times.items():
        lines.append(
            f"| {side} | {statistics.median(values):.3f} | {min(values):.3f}-{max(values):.3f} |"
        )
    lines += [
        "",
        f"Harness / MLflow, median of the {len(ratios)} paired ratios: "
        f"**{statistics.median(ratios):.3f}** (range {min(ratios):.3f}-{max(ratios):.3f}).",
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
