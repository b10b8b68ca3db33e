"""The report's loss-against-FLOPs figure."""

from __future__ import annotations

from experiments.pipeline.report_plots import loss_against_flops, plot_training_curves


def records(spent: int, steps: int = 4) -> list[dict]:
    out = []
    for step in range(1, steps + 1):
        spent += 10
        out.append({"kind": "train", "step": step, "loss": 2.0 / step, "flops_spent_total": spent})
        if step % 2 == 0:
            out.append({"kind": "validation", "step": step, "val_loss": 2.5 / step, "flops": 3})
    return out


def test_points_are_placed_at_the_flops_the_plan_had_spent():
    train, validation = loss_against_flops(records(100))
    assert train == [(110, 2.0), (120, 1.0), (130, 2.0 / 3), (140, 0.5)]
    assert validation == [(123, 1.25), (143, 2.5 / 4)]


def test_the_figure_has_a_panel_per_stage_in_png_and_pdf(tmp_path):
    curves = {"lora-default": records(0), "grid/lr=1e-4": records(40), "grid/lr=1e-3": records(80),
              "final": records(200, 8)}
    path = plot_training_curves(tmp_path / "curves.png", curves, limit=1000)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
