"""Token-weighted causal-LM cross-entropy; positions labelled −100 (padding) never enter it.

Windows carry ``labels`` equal to ``input_ids`` with −100 on padding (``lvdata.make_windows``).
Position ``t`` predicts token ``t + 1``, so the targets are the labels shifted left by one; the
last position has no target. Losses are kept as *sums* of nats with their token counts, so
batches, ranks and validation windows combine into a token-weighted mean exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """Targets aligned with the logits: ``labels[:, 1:]`` then one ``IGNORE_INDEX`` column, (B, T)."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token cross-entropies (nats, float32) over non-padding targets, and their count.

    ``logits`` (B, T, V) in any float dtype (upcast to float32); ``labels`` (B, T) int64 with
    ``IGNORE_INDEX`` where no loss is due. Returns two scalar tensors: ``(nats, tokens)``.
    """
    targets = shifted_targets(labels).reshape(-1)  # (B*T,)
    nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets,
                           ignore_index=IGNORE_INDEX, reduction="sum")  # fmt: skip
    return nats, (targets != IGNORE_INDEX).sum()


def count_targets(labels: np.ndarray) -> int:
    """Number of targets ``token_cross_entropy`` scores in ``labels`` (N, T): non-padding labels
    after the first position of each window."""
    return int((np.asarray(labels)[:, 1:] != IGNORE_INDEX).sum())
