"""Constrained generation over the few tokens it can read or write, not the whole vocabulary.

Under the LLMTIME grammar a forecast can only write 14 tokens (13 characters and EOS); every
other logit is set to ``-inf`` before the search looks at it. Computing those 151,922 logits
anyway, and passing over them in every processor, the float32 copy, the argmax and the
allocation of each ``(rows, 151,936)`` tensor, is what a decoding step of a small model costs
(measured: 90 % of a sampled forecast of the demo's model).

:func:`vocabulary_subset` runs ``generate`` in a smaller id space instead: the ``K`` tokens of
a :class:`VocabularySubset` (the grammar's, EOS and pad, and every token of the prompts),
numbered ``0..K-1`` in the order of their real ids. Inside it the model's input embedding reads
a subset id as its real token, and its output layer computes only the ``K`` rows of those
tokens. Nothing is approximated: each logit is the same row's dot product with the same hidden
state, and the tokens left out are ones the grammar forbids, so greedy search, the softmax, the
top-p nucleus and the Gumbel-max draw over what is allowed are the same; the subset ids keep
the real ids' order, so the sampler draws its noise for the same columns in the same order. Only
the float rounding of the product may differ, as a matrix product of another shape may sum in
another order: bitwise equal at the demo's width 64 (tested), within 1 ulp at Qwen2.5's 896 in
float32 on a CPU, so a token differs only where two logits tie to rounding. FLOP charges do not
depend on it: the convention prices a full forward, charged from shapes.

Used only where it is exact: an output layer that is a plain ``nn.Linear`` (each logit from
its own row), whatever elementwise scaling or soft-capping the model applies after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True, eq=False)
class VocabularySubset:
    """``real_ids`` int64 ``(K,)``, strictly increasing: the real token id of each subset id."""

    real_ids: torch.Tensor

    @classmethod
    def of(cls, token_ids: Iterable[int] | torch.Tensor, vocab_size: int) -> VocabularySubset:
        """The distinct ids of ``token_ids``; each must be a token of a ``vocab_size`` vocabulary."""
        ids = torch.unique(torch.as_tensor(token_ids if torch.is_tensor(token_ids) else list(token_ids)).long())
        if len(ids) == 0 or ids[0] < 0 or ids[-1] >= vocab_size:
            raise ValueError(f"a vocabulary subset needs token ids in [0, {vocab_size}); got "
                             f"{ids.tolist()[:3]}...{ids.tolist()[-3:]}")
        return cls(ids)

    def __len__(self) -> int:
        return len(self.real_ids)

    def to_subset(self, real_ids: torch.Tensor | Iterable[int]) -> torch.Tensor:
        """The subset ids of ``real_ids`` (any shape); raises ``KeyError`` for a token not kept."""
        real = torch.as_tensor(real_ids if torch.is_tensor(real_ids) else list(real_ids)).long()
        kept = self.real_ids.to(real.device)
        position = torch.searchsorted(kept, real).clamp(max=len(kept) - 1)
        missing = kept[position] != real
        if bool(missing.any()):
            raise KeyError(f"tokens {real[missing].unique().tolist()[:5]} are not in the vocabulary subset")
        return position

    def to_real(self, subset_ids: torch.Tensor) -> torch.Tensor:
        """The real ids of ``subset_ids`` (any shape, on any device)."""
        return self.real_ids.to(subset_ids.device)[subset_ids]


class SubsetEmbedding(nn.Module):
    """The model's input embedding, reading subset ids: ``original(real_ids[ids])``."""

    def __init__(self, original: nn.Module, subset: VocabularySubset) -> None:
        super().__init__()
        self.__dict__["original"] = original  # not a submodule: nothing added to the state dict
        self.register_buffer("real_ids", subset.real_ids.to(_device_of(original)), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, T) subset ids -> (B, T, d)
        return self.original(self.real_ids[input_ids])


class SubsetHead(nn.Module):
    """The rows of an ``nn.Linear`` output layer for the vocabulary subset: ``(B, T, d) -> (B, T, K)``."""

    def __init__(self, original: nn.Linear, subset: VocabularySubset) -> None:
        super().__init__()
        self.__dict__["original"] = original
        real_ids = subset.real_ids.to(original.weight.device)
        self.register_buffer("weight", original.weight.detach()[real_ids], persistent=False)  # (K, d)
        bias = None if original.bias is None else original.bias.detach()[real_ids]
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias)


def subset_is_exact(model: nn.Module) -> bool:
    """Whether :func:`vocabulary_subset` is exact for ``model``: an input embedding to wrap and an
    output layer that is a plain ``nn.Linear``."""
    get_input, get_output = (getattr(model, name, None) for name in ("get_input_embeddings", "get_output_embeddings"))
    if not (callable(get_input) and callable(get_output)):
        return False
    return get_input() is not None and type(get_output()) is nn.Linear


@contextmanager
def vocabulary_subset(model: nn.Module, subset: VocabularySubset) -> Iterator[None]:
    """Within the block ``model`` reads and scores only ``subset``'s tokens, in subset ids
    (see the module docstring); its embedding and output layer are restored on exit, also on an
    error. For generation only: inside it the model's state dict and parameters lack the
    embedding and output weights, so do not save, move, cast or train it there. Raises
    ``ValueError`` for a model where that would not be exact (:func:`subset_is_exact`) or one
    already inside such a block."""
    get_output = getattr(model, "get_output_embeddings", None)
    if callable(get_output) and isinstance(get_output(), SubsetHead):
        raise ValueError(f"{type(model).__name__} is already generating over a vocabulary subset")
    if not subset_is_exact(model):
        raise ValueError(f"{type(model).__name__}: a vocabulary subset needs an input embedding and an nn.Linear "
                         "output layer")
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    model.set_input_embeddings(SubsetEmbedding(embedding, subset))
    model.set_output_embeddings(SubsetHead(head, subset))
    try:
        yield
    finally:
        model.set_input_embeddings(embedding)
        model.set_output_embeddings(head)


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


__all__ = ["SubsetEmbedding", "SubsetHead", "VocabularySubset", "subset_is_exact", "vocabulary_subset"]
