"""flopcount benchmark: analytic count speed vs an fvcore trace, and the plan's key figures.

Prints, in one run:
1. the analytic count of the full Qwen2.5-0.5B at 512 tokens (microseconds, many repetitions)
   next to the fvcore trace of the real-width model with random weights on the same input,
   and their ratio;
2. coursework forward FLOPs of Qwen2.5-0.5B at 128, 512 and 768 tokens, and the share of 1e17
   used by 600 training steps at batch 4 with LoRA rank 8 (q_proj, v_proj) at each length;
3. the measured backward / forward ratio (FlopCounterMode) of one LoRA training step, next to
   the 2x the budget rule assumes.

It also writes ``benchmarks/out/flopcount_trace_vs_exact.md`` (the layer-by-layer table of
the traced model and the coursework-vs-exact table) and ``flopcount_components.png``.

Usage: python benchmarks/bench_flopcount.py [--layers 24] [--config DIR]
(--layers 2 traces a 2-layer model of the real widths: faster, and the ratio then compares
the full analytic count with a smaller trace; the output says which was used).
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoConfig, Qwen2ForCausalLM  # noqa: E402

import lora  # noqa: E402
from flopcount import CountSetup, PRESETS, compare_conventions, compare_reports, forward_flops, measure_backward_ratio, \
    trace_flops, training_step_flops  # noqa: E402
from flopcount.count.flop_report import FlopReport  # noqa: E402

OUT = ROOT / "benchmarks" / "out"

BUDGET = 10**17
LENGTHS = (128, 512, 768)


def analytic_microseconds(repetitions: int = 2000) -> float:
    """Best mean over 5 runs of ``repetitions`` counts (report built and totalled)."""
    shape = PRESETS["qwen2.5-0.5b"]
    runs = timeit.repeat(lambda: forward_flops(shape, 512).total, number=repetitions, repeat=5)
    return 1e6 * min(runs) / repetitions


def build_model(config_dir: Path, layers: int) -> Qwen2ForCausalLM:
    config = AutoConfig.from_pretrained(config_dir, attn_implementation="eager")
    config.num_hidden_layers = layers
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).float().eval()


def plot_components(reports: dict[str, FlopReport], path: Path) -> None:
    """Horizontal bars: FLOPs per component under each count (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(reports.values()))
    names = [n for n in first.by_component() if any(r.by_component()[n] for r in reports.values())]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(names) + 1.5))
    height = 0.8 / len(reports)
    for i, (label, report) in enumerate(reports.items()):
        values = report.by_component()
        ax.barh([k + i * height for k in range(len(names))], [values[n] or float("nan") for n in names],
                height=height, label=f"{label} (total {report.total:.3e})")
    ax.set_yticks([k + height * (len(reports) - 1) / 2 for k in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs (one forward, batch 1 x 512 tokens)")
    ax.set_title("Qwen2.5-0.5B: FLOPs per component")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24, help="decoder layers of the traced model (default 24)")
    parser.add_argument("--config", type=Path, default=ROOT.parent / "shared" / "assets" / "qwen2.5-0.5b-instruct",
                        help="directory with the Qwen2.5-0.5B config.json")
    args = parser.parse_args()

    steps = tqdm(total=4, desc="bench_flopcount", unit="stage", file=sys.stderr)
    analytic_us = analytic_microseconds()
    steps.update()

    model = build_model(args.config, args.layers)
    input_ids = torch.randint(0, 151936, (1, 512), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    traced = trace_flops(model, input_ids)
    trace_s = time.perf_counter() - start
    steps.update()
    exact = forward_flops(CountSetup.of(model, "exact"), 512)
    agree = "agree exactly" if traced.report.total == exact.total else "DIFFER"
    OUT.mkdir(parents=True, exist_ok=True)
    table = compare_reports(exact, traced, f"Qwen2.5-0.5B widths, {args.layers} layers, batch 1 x 512 tokens, eager")
    (OUT / "flopcount_trace_vs_exact.md").write_text(
        f"{table.to_markdown()}\n\n### coursework vs exact (Qwen2.5-0.5B, 512 tokens)\n\n"
        f"{compare_conventions('qwen2.5-0.5b', 512)}\n")
    plot_components({"coursework": forward_flops("qwen2.5-0.5b", 512), "exact": forward_flops(CountSetup.of("qwen2.5-0.5b", "exact"), 512), f"traced ({args.layers} layers)": traced.report},
        OUT / "flopcount_components.png")

    lora.inject(model, 8, targets=("q_proj", "v_proj"))
    ratio = measure_backward_ratio(model, input_ids[:, :128].repeat(4, 1))
    steps.update()

    rows = []
    for n in LENGTHS:
        forward = forward_flops("qwen2.5-0.5b", n).total
        run = 600 * training_step_flops(CountSetup.of("qwen2.5-0.5b", lora_rank=8), 4, n)
        rows.append((n, forward, run))
    steps.update()
    steps.close()

    print("== analytic count vs fvcore trace (Qwen2.5-0.5B widths, batch 1 x 512 tokens)")
    print(f"analytic forward_flops(qwen2.5-0.5b, 512), 24 layers: {analytic_us:10.1f} us per count")
    print(f"fvcore trace, {args.layers} layer(s), random float32 weights:  {1e6 * trace_s:10.1f} us "
          f"({trace_s:.2f} s)")
    print(f"ratio trace / analytic: {1e6 * trace_s / analytic_us:,.0f}x "
          f"(exact-convention totals of the traced model {agree}: {traced.report.total:.6e})")
    print()
    print("== coursework convention, Qwen2.5-0.5B")
    print(f"{'tokens':>6}  {'forward FLOPs':>16}  {'600 steps, batch 4, LoRA r=8':>30}  {'share of 1e17':>13}")
    for n, forward, run in rows:
        print(f"{n:>6}  {forward:>16.6e}  {run:>30.6e}  {100 * run / BUDGET:>12.4f}%")
    print()
    print(f"== one LoRA training step (r=8 on q_proj, v_proj; batch 4 x 128; {args.layers} layer(s); FlopCounterMode)")
    print(f"forward {ratio.forward:.6e}, backward {ratio.backward:.6e} matmul FLOPs: "
          f"backward / forward = {ratio.ratio:.3f} (the budget rule assumes {ratio.assumed})")
    print(f"\nwrote {OUT / 'flopcount_trace_vs_exact.md'} and {OUT / 'flopcount_components.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
