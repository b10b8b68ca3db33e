"""The per-step metrics file of a run: ``run_dir/metrics.jsonl``, one JSON object per line.

Records have a ``kind``:

- ``"train"``: ``step``, ``loss`` (mean nats per target token of the global batch), ``lr``,
  ``tokens`` (non-padding tokens of the global batch), ``flops_step`` (FLOPs charged for the
  step), ``flops_spent_total`` (the ledger's total after the charge, all experiments),
  ``rerun`` (the ledger marked the charge a re-run), ``elapsed_s`` (since this session
  started), ``session`` (ledger session id).
- ``"validation"``: ``step``, ``val_loss`` (nats per target token), ``val_ppl``,
  ``val_tokens``, ``flops`` (charged for the pass), ``session``.

The file is append-only across resumes: steps re-run after a crash appear twice, and
:func:`read_metrics` keeps the last record per ``(kind, step)``. Only rank 0 writes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from experiments.training.trackers import log_record

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Append records to a JSON-lines file, one flushed line per record.

    Opening drops a torn last line (a writer killed mid-line) so the next record starts on a
    line of its own; complete lines are never changed.
    """

    def __init__(self, path: str | os.PathLike[str], trackers: list | None = None) -> None:
        self.trackers = list(trackers or [])  # accelerate trackers that get every record too
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> None:
        self._file.write(json.dumps({"kind": kind, **fields}, allow_nan=True) + "\n")
        self._file.flush()
        if self.trackers:
            log_record(self.trackers, kind, fields)

    def close(self) -> None:
        self._file.close()
        for tracker in self.trackers:
            tracker.finish()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _drop_torn_tail(path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def read_metrics(path: str | os.PathLike[str], kind: str | None = None) -> list[dict[str, Any]]:
    """Records of a metrics file, the last one per ``(kind, step)``, ordered by step then kind
    (``"train"`` before ``"validation"`` of the same step); only ``kind`` records if given.

    A last line without its newline (a writer still writing, or killed) is ignored; any other
    line that is not a JSON object with ``kind`` and ``step`` raises ``ValueError`` naming it.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: "" or a torn tail
        try:
            record = json.loads(line)
            key = (record["kind"], int(record["step"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number} is not a metrics record ({error}): {line[:200]!r}") from None
        latest[key] = record
    records = sorted(latest.items(), key=lambda item: (item[0][1], item[0][0]))
    return [record for (record_kind, _), record in records if kind in (None, record_kind)]
