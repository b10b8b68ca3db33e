"""Fixtures shared by the whole suite.

Files from ``../shared`` (the real dataset, the Qwen2.5 tokenizer and config) are required
assets: a test that needs one fails when it is missing and ``CI`` is set, and is skipped
(with the reason) only on a developer machine without ``../shared``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("LLMTIME_SHARED", REPO_ROOT.parent / "shared"))
REAL_DATA = SHARED_DIR / "data" / "lotka_volterra_data.h5"
REAL_DATA_SHA256 = "adaf44d863b4ace7dc2fce1451b937e80cd0ecb243eb72250d1df3045f2b5632"
QWEN_ASSETS = SHARED_DIR / "assets" / "qwen2.5-0.5b-instruct"


def require_shared(path: Path) -> Path:
    """Return ``path`` if it exists; otherwise fail under CI, skip elsewhere."""
    if path.exists():
        return path
    message = f"required shared asset is missing: {path}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """The real Lotka-Volterra dataset, ``(1000, 100, 2)`` float32 plus ``time``."""
    return require_shared(REAL_DATA)


@pytest.fixture(scope="session")
def qwen_assets() -> Path:
    """Directory holding Qwen2.5-0.5B-Instruct's config.json and tokenizer (no weights)."""
    require_shared(QWEN_ASSETS / "tokenizer.json")
    return require_shared(QWEN_ASSETS / "config.json").parent


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_assets):
    """The real Qwen2.5 tokenizer, loaded once per session."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_assets)


def check_figure_files(png: Path, min_pixels: tuple[int, int] = (600, 300), min_dpi: float = 149.5) -> None:
    """Assert that the figure ``png`` is a readable PNG of at least ``min_pixels`` (width, height)
    at ``min_dpi`` or more, and that the PDF beside it is a complete PDF document with a page."""
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG", f"{png} is {image.format}, not PNG"
        assert image.size[0] >= min_pixels[0] and image.size[1] >= min_pixels[1], f"{png} is only {image.size}"
        dpi = image.info.get("dpi", (0, 0))
        assert min(dpi) >= min_dpi, f"{png} is {dpi} dpi"
        image.load()  # decodes every row: a truncated file fails here
    pdf = png.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF"), f"{png.with_suffix('.pdf')} is not a PDF"
    assert len(pdf) > 2000 and b"/Type /Page" in pdf, f"{png.with_suffix('.pdf')} has no page"


@pytest.fixture
def figure_check():
    """:func:`check_figure_files`, for tests that write figures."""
    return check_figure_files
