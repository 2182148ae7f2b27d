"""model.dtype on this machine (a CPU): auto is float32, float16 is refused before loading."""

import pytest
import torch

from harness.commands.cli import main
from harness.config.spec import SpecError
from harness.data.models import resolve_dtype

# What a CPU machine does; on a GPU machine auto and float16 resolve differently.
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="asserts CPU-only behaviour")


@cpu_only
def test_auto_is_float32_on_a_cpu_and_bfloat16_runs_there():
    assert resolve_dtype("auto") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16


@cpu_only
def test_float16_without_a_gpu_fails_in_one_line_before_loading(tmp_path, capsys):
    with pytest.raises(SpecError, match="model.dtype='float16' needs a CUDA GPU"):
        resolve_dtype("float16")
    study = tmp_path / "study.py"
    study.write_text(
        "from harness import Experiment\n"
        "E = Experiment(method='dpo', beta=0.1, dataset='sentiment')\n"
    )
    assert main(["run", str(study), "--set", "model.dtype=float16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a CUDA GPU" in err


@pytest.mark.slow
def test_the_gpu_benchmark_runs_at_toy_size_on_a_cpu(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))  # as when run as a script: its helpers beside it
    path = folder / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    bench_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_gpu)

    out = tmp_path / "gpu.md"
    bench_gpu.main(["--tiny", "--steps", "3", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| full", "| LoRA"))]
    assert len(rows) == 4  # full and LoRA, each with and without the reference cache
