"""GPU check: the full-size architecture trains and forecasts on the device, with its checks.

Qwen2.5-0.5B's architecture (the shipped ``config.json``; random weights: FLOPs, speed and memory
do not depend on their values) with LoRA (rank ``--rank`` on q_proj and v_proj):

1. **Training**: ``--steps`` steps of ``experiments.train`` (the real loop: ledger charges, the
   final checkpoint) at batch ``--batch`` × each of ``--contexts`` (default 4 × 512 and 768), in
   each precision of ``--precision`` (``no``: float32; ``bf16``: the loop's ``mixed_precision``,
   accelerate's autocast with float32 adapter weights).
   The first step is a warm-up; the others are timed from the loop's metrics log.
2. **Forecasting**: one batch of ``--series`` test trajectories through ``forecast_series``
   (constrained, greedy, KV-cached, charged), in each precision (``bf16``: the weights cast to
   bfloat16, as ``[model] dtype = "bfloat16"`` loads them; autocast would recast the frozen
   weights at every decoding step, since it caches casts of trainable weights only).

For each it prints tokens/s (training: batch × context positions; forecasting: generated tokens),
the analytic FLOPs per second (the ``--convention`` count charged to the ledger, default
``exact``: the real module graph), the model FLOP utilisation (those FLOP/s ÷ the device's peak
from ``--peak-tflops``) and the peak memory (GPU: ``max_memory_allocated``; CPU: the process's
peak RSS so far). Then three checks on the device, each ``ok`` or ``FAIL`` (exit status 1):

- **grammar tables**: the LLMTIME automaton's tables on the device give the same allowed tokens
  as on the CPU along a scripted text, and end with only EOS allowed;
- **RNG state**: ``capture_rng_state`` saved with ``torch.save`` and restored gives the same
  draws (torch CPU and CUDA, numpy, python);
- **checkpoint resume**: a run stopped after step 1 (its FLOP cap) and resumed from its
  checkpoint ends step 2 with an adapter bit-identical to an uninterrupted run's (under
  ``torch.use_deterministic_algorithms``, warnings only). A FAIL whose detail shows a tiny
  difference means a kernel of the device is not deterministic (attention backward, say), not
  that the checkpoint lost state.

    python benchmarks/bench_gpu.py --peak-tflops bf16=989 no=494     # H100 / H200 SXM: dense bf16, tf32
    python benchmarks/bench_gpu.py --device cpu --contexts 64 --steps 2  # exercise it on a CPU (~1 minute)

Without a CUDA device and without ``--device cpu`` it says so and exits 0 (``make bench``).
Everything it writes goes to a temporary directory, deleted afterwards.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS for the resume check

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # runs from a checkout without `pip install -e .`

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoConfig  # noqa: E402

from experiments import (  # noqa: E402
    BudgetConfig,
    DataConfig,
    ForecastConfig,
    LLMTimeGrammar,
    LLMTimeLogitsProcessor,
    TrainConfig,
    build_random_model,
    forecast_series,
    make_accelerator,
    prepare_data,
    read_metrics,
    train,
)
from experiments.training.checkpoint import ADAPTER, capture_rng_state, restore_rng_state  # noqa: E402
from flopcount import Budget, CountSetup  # noqa: E402
from lora import ADAPTER_WEIGHTS  # noqa: E402
from lvdata import load_tokenizer  # noqa: E402
from lvdata.defaults import (  # noqa: E402
    DEFAULT_DATA_PATH,
    DEFAULT_TOKENIZER_DIR,
    HUB_MODEL_ID,
    default_tokenizer_source,
)

PRECISIONS = {"no": None, "bf16": torch.bfloat16}
LIMIT = 10**18  # FLOPs (SQLite integers stop at 9.2e18): the ledger here only records
GIB = 2**30


# -- precision -----------------------------------------------------------------------------------


# -- measurements --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One timed configuration: ``tokens`` and ``flops`` over ``seconds`` (the timed part)."""

    phase: str
    precision: str
    shape: str
    timed: str
    seconds: float
    tokens: int
    flops: int
    peak_memory: int  # bytes
    note: str = ""

    def mfu(self, peak_tflops: dict[str, float]) -> float | None:
        """Analytic FLOP/s ÷ the device's peak for this precision (None: no peak given)."""
        peak = peak_tflops.get(self.precision, peak_tflops.get("*"))
        return None if peak is None or self.seconds <= 0 else self.flops / self.seconds / (peak * 1e12)


class Bench:
    """The base model (kept on the CPU, copied to the device per configuration), data, tokenizer
    and scratch directory of one benchmark run."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args, self.scratch = args, scratch
        self.device = torch.device(args.device)
        self.tokenizer = load_tokenizer(default_tokenizer_source())
        data_path = args.data if args.data is not None else (DEFAULT_DATA_PATH if DEFAULT_DATA_PATH.is_file() else None)
        self.data = prepare_data(DataConfig(path=data_path, simulate_systems=200, prompt_steps=args.prompt_steps,
                                            forecast_steps=args.forecast_steps), self.tokenizer)
        config = AutoConfig.from_pretrained(args.config)
        if args.layers:
            config.num_hidden_layers = args.layers
        self.base = build_random_model(config, seed=args.seed)  # float32, CPU
        self.ledger = scratch / "ledger.sqlite"

    def model(self, precision: str, *, inference: bool = False) -> torch.nn.Module:
        """A fresh copy of the base model on the device: for training, float32 weights and its
        forward autocast to ``precision``; for ``inference``, the weights cast to it."""
        model = copy.deepcopy(self.base).to(self.device)
        dtype = PRECISIONS[precision]
        if inference:
            return model if dtype is None else model.to(dtype)
        return model  # training autocasts through the loop's mixed_precision

    def accelerator(self, precision: str):
        return make_accelerator(cpu=self.device.type == "cpu", mixed_precision=precision)  # one per run

    def reset_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> int:
        """Bytes: the device's peak allocation since ``reset_memory``, or the process's peak RSS."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def train_config(self, name: str, context: int, steps: int, batch: int, precision: str = "no") -> TrainConfig:
        return TrainConfig(name, steps=steps, batch_size=batch, context=context, learning_rate=1e-4,
                           lora_rank=self.args.rank, eval_every=0, checkpoint_every=max(steps, 1),
                           seed=self.args.seed, mixed_precision=precision)

    def budget(self, **overrides) -> BudgetConfig:
        return BudgetConfig(LIMIT, self.ledger, self.args.convention, synchronous="NORMAL", **overrides)


def measure_training(bench: Bench, precision: str, context: int) -> Measured:
    """``--steps`` steps of ``experiments.train``; steps after the first are timed."""
    args = bench.args
    config = bench.train_config(f"train-{precision}-{context}", context, args.steps, args.batch, precision)
    model = bench.model(precision)
    bench.reset_memory()
    result = train(model, bench.data, config, bench.scratch / config.experiment, bench.budget(),
                   accelerator=bench.accelerator(precision), progress=False)
    records = read_metrics(result.metrics_path, kind="train")  # elapsed_s: after each step, the loss read back
    elapsed = [record["elapsed_s"] for record in records]
    timed = len(elapsed) - 1 if len(elapsed) > 1 else 1
    seconds = elapsed[-1] - elapsed[0] if len(elapsed) > 1 else elapsed[0]
    return Measured("train", precision, f"{args.batch} x {context}", f"{timed} step{'s' * (timed != 1)}", seconds,
                    tokens=timed * args.batch * context, flops=sum(r["flops_step"] for r in records[-timed:]),
                    peak_memory=bench.peak_memory(), note=f"loss {result.final_train_loss:.3f}")


def measure_forecast(bench: Bench, precision: str) -> Measured:
    """One batch of ``--series`` test trajectories, constrained greedy, charged."""
    args = bench.args
    examples = bench.data.forecast_examples()[: args.series]
    config = ForecastConfig(k=args.prompt_steps, m=args.forecast_steps, batch_size=len(examples), fmt=bench.data.fmt)
    model = bench.model(precision, inference=True)
    bench.reset_memory()
    with Budget(LIMIT, bench.ledger, f"forecast-{precision}", CountSetup.of(model.config, args.convention),
                synchronous="NORMAL") as budget:
        started = time.perf_counter()
        output = forecast_series(model, bench.tokenizer, examples, config, budget, progress=False)
        seconds = time.perf_counter() - started
    generated = sum(batch.new_tokens * len(batch.indices) * batch.samples for batch in output.batches)
    shape = f"{len(examples)} series, {args.prompt_steps} -> {args.forecast_steps} steps"
    return Measured("forecast", precision, shape,
                    "1 batch", seconds, tokens=generated, flops=output.flops, peak_memory=bench.peak_memory(),
                    note=f"malformed {output.malformed_sample_fraction:.0%}")


# -- checks on the device ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


GRAMMAR_TEXT = "1.23,0.45;10.00,2.50;"  # two steps of two numbers, max_int_digits 2


def allowed_along(text: str, tokenizer, device: torch.device) -> tuple[list[torch.Tensor], LLMTimeLogitsProcessor]:
    """The grammar processor's allowed-token mask (on the CPU) at each position of ``text``
    generated after a one-step prompt, run on ``device``; and the processor."""
    grammar = LLMTimeGrammar(n_steps=2, n_vars=2, max_int_digits=2)
    processor = LLMTimeLogitsProcessor(grammar, tokenizer, eos_token_id=tokenizer.eos_token_id)
    tokens = [tokenizer.encode(char, add_special_tokens=False)[0] for char in text]
    input_ids = torch.tensor([tokenizer.encode("0.50,0.50;", add_special_tokens=False)], device=device)
    masks = []
    for token in [*tokens, None]:
        scores = torch.zeros(1, len(tokenizer), device=device)
        masks.append(torch.isfinite(processor(input_ids, scores))[0].cpu())  # (vocab,)
        if token is not None:
            input_ids = torch.cat([input_ids, torch.tensor([[token]], device=device)], dim=1)
    return masks, processor


def check_grammar(bench: Bench) -> Check:
    tokenizer, device = bench.tokenizer, bench.device
    masks, processor = allowed_along(GRAMMAR_TEXT, tokenizer, device)
    reference, _ = allowed_along(GRAMMAR_TEXT, tokenizer, torch.device("cpu"))
    tokens = [tokenizer.encode(char, add_special_tokens=False)[0] for char in GRAMMAR_TEXT]
    on_device = {tensor.device.type for tensor in (processor.next_state, processor.allowed, processor.state)}
    problems = []
    if on_device != {device.type}:
        problems.append(f"tables on {sorted(on_device)}")
    if not all(torch.equal(a, b) for a, b in zip(masks, reference)):
        problems.append("allowed tokens differ from the CPU's")
    if not all(bool(mask[token]) for mask, token in zip(masks, tokens)):
        problems.append("a token of the scripted text was refused")
    if masks[-1].nonzero().flatten().tolist() != [tokenizer.eos_token_id] or not bool(processor.finished.all()):
        problems.append("after the last step, EOS is not the only token allowed")
    return Check("grammar tables", not problems, "; ".join(problems) or
                 f"tables on {processor.next_state.device}; {len(masks)} constrained positions equal to the CPU's")


def draws(device: torch.device) -> list:
    values = [torch.rand(4), np.random.rand(4), random.random()]
    if torch.cuda.is_available():
        values.append(torch.rand(4, device="cuda").cpu())
    return values


def check_rng(bench: Bench) -> Check:
    buffer = io.BytesIO()
    torch.save(capture_rng_state(), buffer)  # as a checkpoint stores it
    first = draws(bench.device)
    buffer.seek(0)
    restore_rng_state(torch.load(buffer, weights_only=True))
    again = draws(bench.device)
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    sources = "torch CPU, numpy, python" + (", CUDA" if torch.cuda.is_available() else "")
    return Check("RNG state", same, f"{sources} draws {'repeat' if same else 'DIFFER'} after save + restore")


def check_resume(bench: Bench) -> Check:
    """An uninterrupted 2-step run against one stopped by its FLOP cap after step 1 and resumed."""
    args = bench.args
    config = bench.train_config("resume", args.check_context, steps=2, batch=args.check_batch)
    config = replace(config, checkpoint_every=1)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        def run(name: str, budget: BudgetConfig, experiment: str):
            return train(bench.model("no"), bench.data, replace(config, experiment=experiment),
                         bench.scratch / name, budget, accelerator=bench.accelerator("no"), progress=False)

        reference = run("reference", bench.budget(), "resume-reference")
        one_step = read_metrics(reference.metrics_path, kind="train")[0]["flops_step"]
        stopped = run("resumed", bench.budget(require_fit=False, experiment_limit=one_step), "resume")
        resumed = run("resumed", bench.budget(), "resume")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    if (stopped.status, stopped.steps_done, resumed.resumed_from, resumed.steps_done) != ("stopped", 1, 1, 2):
        return Check("checkpoint resume", False, f"stopped {stopped.status} at {stopped.steps_done}, resumed from "
                                                 f"{resumed.resumed_from} to {resumed.steps_done}")
    expected = load_file(reference.checkpoint / ADAPTER / ADAPTER_WEIGHTS)
    got = load_file(resumed.checkpoint / ADAPTER / ADAPTER_WEIGHTS)
    differing = [name for name in expected if not torch.equal(expected[name], got[name])]
    detail = (f"step 2 after a resume from step 1: {len(expected)} adapter tensors bit-identical to the "
              f"uninterrupted run's" if not differing else
              f"{len(differing)} of {len(expected)} adapter tensors differ, max |diff| "
              f"{max(float((expected[n] - got[n]).abs().max()) for n in differing):.3g}")
    return Check("checkpoint resume", not differing and resumed.final_train_loss == reference.final_train_loss,
                 detail)


# -- output --------------------------------------------------------------------------------------


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def measurement_rows(measured: list[Measured], peak_tflops: dict[str, float]) -> list[list[str]]:
    rows = []
    for m in measured:
        mfu = m.mfu(peak_tflops)
        rows.append([m.phase, m.precision, m.shape, m.timed, f"{m.seconds:.3f}", f"{m.tokens / m.seconds:,.0f}",
                     f"{m.flops / m.seconds / 1e12:.4g}", "-" if mfu is None else f"{100 * mfu:.3g}%",
                     f"{m.peak_memory / GIB:.2f} GiB", m.note])
    return rows


def parse_peaks(specs: list[str]) -> dict[str, float]:
    """``["bf16=989", "no=494"]`` or ``["989"]`` (every precision) -> precision -> TFLOP/s."""
    peaks = {}
    for spec in specs:
        precision, _, value = spec.rpartition("=")
        if precision and precision not in PRECISIONS:
            raise SystemExit(f"--peak-tflops {spec!r}: precision must be one of {list(PRECISIONS)}")
        peaks[precision or "*"] = float(value)
    return peaks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--precision", nargs="+", default=["no", "bf16"], choices=list(PRECISIONS))
    parser.add_argument("--contexts", nargs="+", type=int, default=[512, 768], help="training contexts (tokens)")
    parser.add_argument("--batch", type=int, default=4, help="training batch (windows)")
    parser.add_argument("--steps", type=int, default=5, help="training steps per configuration (the first: warm-up)")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank on q_proj and v_proj")
    parser.add_argument("--peak-tflops", nargs="*", default=[], metavar="[PRECISION=]TFLOPS",
                        help="the device's peak, e.g. bf16=989 no=494 (no: float32, which CUDA may run as tf32)")
    parser.add_argument("--convention", default="exact", choices=["exact", "coursework"],
                        help="the analytic FLOP count behind FLOP/s and MFU (and the ledger here)")
    parser.add_argument("--series", type=int, default=None, help="test trajectories forecast in one batch "
                        "(default 16 on cuda, 2 on cpu)")
    parser.add_argument("--prompt-steps", type=int, default=None, help="forecast context steps (50 / 10)")
    parser.add_argument("--forecast-steps", type=int, default=None, help="steps forecast (20 / 2)")
    parser.add_argument("--layers", type=int, default=0, help="decoder layers (0: the config's, 24)")
    parser.add_argument("--config", default=None, help="model config: a directory or hub id (default: the "
                        "shared Qwen2.5-0.5B-Instruct assets, else the hub id)")
    parser.add_argument("--data", default=None, help="HDF5 trajectories (default: the shared file, else simulated)")
    parser.add_argument("--check-context", type=int, default=32, help="context of the resume check's 2 steps")
    parser.add_argument("--check-batch", type=int, default=1, help="batch of the resume check's 2 steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    on_cuda = args.device == "cuda"
    args.series = args.series or (16 if on_cuda else 2)
    args.prompt_steps = args.prompt_steps or (50 if on_cuda else 10)
    args.forecast_steps = args.forecast_steps or (20 if on_cuda else 2)
    args.config = args.config or (str(DEFAULT_TOKENIZER_DIR) if (DEFAULT_TOKENIZER_DIR / "config.json").is_file()
                                  else HUB_MODEL_ID)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured (use --device cpu to exercise the script)")
        return 0
    peaks = parse_peaks(args.peak_tflops)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        bench = Bench(args, Path(scratch))
        name = torch.cuda.get_device_name(bench.device) if bench.device.type == "cuda" else "CPU"
        shape = bench.base.config
        print(f"bench_gpu on {args.device} ({name}); torch {torch.__version__}\n"
              f"model: {args.config} architecture, {shape.num_hidden_layers} layers, "
              f"{sum(p.numel() for p in bench.base.parameters()) / 1e6:.1f}M parameters, random weights; "
              f"LoRA r={args.rank} on q_proj, v_proj\n"
              f"FLOPs: the analytic {args.convention} count; peak TFLOP/s: "
              f"{', '.join(f'{k}={v:g}' for k, v in peaks.items()) or 'not given (no MFU)'}\n")
        measured = [measure_training(bench, precision, context) for precision in args.precision
                    for context in args.contexts]
        measured += [measure_forecast(bench, precision) for precision in args.precision]
        print(table(measurement_rows(measured, peaks), ["phase", "precision", "shape", "timed", "seconds",
                                                        "tokens/s", "TFLOP/s", "MFU", "peak memory", "note"]))
        checks = [check_grammar(bench), check_rng(bench), check_resume(bench)]
    print()
    print(table([[c.name, "ok" if c.ok else "FAIL", c.detail] for c in checks], ["device check", "result", "detail"]))
    print(f"\n{sum(c.ok for c in checks)}/{len(checks)} device checks ok; {time.perf_counter() - started:.0f} s")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
