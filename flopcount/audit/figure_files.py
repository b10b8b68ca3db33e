"""Write a matplotlib figure as the PNG a reader opens and the PDF a write-up embeds.

The one saver of every figure in the project: the audit chart here, and (above it in the layers)
the forecast and training-curve figures of ``experiments``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150  # dots per inch of the PNG


def save_png_and_pdf(figure: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``figure`` to ``path`` (must end in ``.png``; ``dpi`` dots per inch) and the vector
    PDF beside it (same name, ``.pdf``); return the PNG's path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG and PDF beside it; {path} does not end in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    figure.savefig(path.with_suffix(".pdf"))
    return path
