"""``benchmarks/bench_gpu.py`` exercised on the CPU at toy sizes, as a real process: every
configuration is measured and printed with consistent figures, and the device checks pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def run_bench(*arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, env=env,
                          timeout=900)


def rows(output: str, first: str) -> list[list[str]]:
    """Body cells of the printed table whose header starts with ``| first``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first}"))
    body = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        body.append([cell.strip() for cell in line.strip("|").split("|")])
    return body


@pytest.mark.slow  # about a minute on 2 busy cores
def test_bench_gpu_on_the_cpu_measures_every_configuration_and_passes_its_checks(qwen_assets):
    done = run_bench("--device", "cpu", "--config", str(qwen_assets), "--layers", "1", "--contexts", "16", "32",
                     "--steps", "2", "--batch", "1", "--series", "2", "--prompt-steps", "5",
                     "--forecast-steps", "1", "--peak-tflops", "no=0.5", "bf16=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 layers" in done.stdout and "the analytic exact count" in done.stdout
    measured = rows(done.stdout, "phase")
    assert [(r[0], r[1], r[2]) for r in measured] == [
        ("train", "no", "1 x 16"), ("train", "no", "1 x 32"), ("train", "bf16", "1 x 16"), ("train", "bf16", "1 x 32"),
        ("forecast", "no", "2 series, 5 -> 1 steps"), ("forecast", "bf16", "2 series, 5 -> 1 steps")]
    for phase, precision, _, timed, seconds, tokens_per_s, tflops, mfu, memory, note in measured:
        assert timed == ("1 step" if phase == "train" else "1 batch")  # --steps 2: the first is a warm-up
        assert float(seconds) > 0 and float(tokens_per_s.replace(",", "")) > 0 and float(tflops) > 0
        peak = {"no": 0.5, "bf16": 2.0}[precision]
        assert float(mfu.rstrip("%")) / 100 == pytest.approx(float(tflops) / peak, rel=1e-2)  # 3-4 digits each
        assert memory.endswith("GiB") and float(memory.split()[0]) > 0.5  # the process held the model
        assert note == "malformed 0%" if phase == "forecast" else note.startswith("loss ")
    checks = {name: (result, detail) for name, result, detail in rows(done.stdout, "device check")}
    assert {name: result for name, (result, _) in checks.items()} == {
        "grammar tables": "ok", "RNG state": "ok", "checkpoint resume": "ok"}
    assert "bit-identical" in checks["checkpoint resume"][1]
    assert "3/3 device checks ok" in done.stdout


def test_bench_gpu_without_a_cuda_device_says_so_and_measures_nothing():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the script would measure it")
    done = run_bench("--device", "cuda")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no CUDA device here" in done.stdout and "| phase" not in done.stdout
