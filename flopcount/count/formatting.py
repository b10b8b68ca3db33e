"""Plain-text and Markdown presentation of FLOP reports (no counting here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from flopcount.count.primitives import PRIMITIVE_COSTS

if TYPE_CHECKING:
    from flopcount.count.flop_report import FlopReport, GenerationReport


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool = False) -> str:
    """Align ``rows`` under ``headers``: text columns left, numbers right.

    With ``markdown``, a GitHub-flavoured Markdown table instead of a plain one.
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts).rstrip()

    if markdown:
        dashes = (("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric))
        rule = "|" + "|".join(dashes) + "|"
    else:
        rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, str) and _looks_numeric(value))


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("%", "").replace("+", "").strip()
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def flops_text(flops: int) -> str:
    """``1.234e+09`` style for large figures, the exact int for small ones."""
    return f"{flops:,}" if abs(flops) < 10**6 else f"{flops:.4e}"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def describe(report: FlopReport) -> str:
    """One line saying what ``report`` counts."""
    lora = f"LoRA r={report.lora_rank} on {','.join(report.lora_targets)}" if report.lora_rank else "no LoRA"
    past = f", past_len {report.past_len}" if report.past_len else ""
    times = f", x{report.multiplier}" if report.multiplier != 1 else ""
    return (f"{report.model or 'model'} | {report.convention} convention | {report.phase}: batch {report.batch} "
            f"x seq_len {report.seq_len}{past} | logits {report.logits} | {lora}{times}")


def component_rows(by_component: dict[str, int]) -> list[list[object]]:
    total = sum(by_component.values())
    return [[name, flops_text(v), _share(v, total)] for name, v in by_component.items()]


def primitive_rows(by_primitive: dict[str, int]) -> list[list[object]]:
    return [[name, f"{n:,}", PRIMITIVE_COSTS[name], flops_text(n * PRIMITIVE_COSTS[name])]
            for name, n in by_primitive.items() if n]


def format_counts(title: str, total: int, by_component: dict[str, int], by_primitive: dict[str, int]) -> str:
    """A titled component table, primitive table and total."""
    return "\n".join([
        title, "",
        format_table(["component", "FLOPs", "share"], component_rows(by_component)), "",
        format_table(["primitive", "count", "FLOPs each", "FLOPs"], primitive_rows(by_primitive)), "",
        f"total: {total:,} FLOPs ({total:.4e})",
    ])


def format_report(report: FlopReport) -> str:
    """Readable tables of a ``FlopReport``: by component and by primitive, then the total."""
    return format_counts(describe(report), report.total, report.by_component(), report.by_primitive())


def format_generation(report: GenerationReport) -> str:
    """Readable tables of a ``GenerationReport`` (prefill + decoding summed) with its parts."""
    title = (f"generation: {report.batch} prompt(s) x {report.samples} sample(s), prompt_len "
             f"{report.prompt_len}, {report.new_tokens} new token(s)\n"
             f"  prefill: {flops_text(report.prefill.total)}  ({describe(report.prefill)})\n"
             f"  decode:  {flops_text(report.decode.total)}  ({describe(report.decode)})")
    return format_counts(title, report.total, report.by_component(), report.by_primitive())
