"""``GumbelMaxSampler``: draws from softmax(scores / T) over the top-p nucleus, as HF's sampler does."""

from __future__ import annotations

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from experiments.forecasting.sampling import GumbelMaxSampler, nucleus

VOCAB = 1000


def grammar_scores(rows: int, logits: list[float], columns: list[int]) -> torch.Tensor:
    """``(rows, VOCAB)`` scores finite only at ``columns``, as the LLMTIME grammar leaves them."""
    scores = torch.full((rows, VOCAB), float("-inf"))
    scores[:, columns] = torch.tensor(logits)
    return scores


def test_draws_follow_the_softmax_of_the_tempered_scores():
    logits, columns, temperature = [2.0, 1.0, 0.0, -1.0], [3, 17, 500, 999], 0.7
    torch.manual_seed(0)
    drawn = GumbelMaxSampler(temperature)(None, grammar_scores(40_000, logits, columns))  # (rows, VOCAB)
    assert (torch.isfinite(drawn).sum(dim=1) == 1).all() and (drawn.max(dim=1).values == 0).all()
    counts = torch.bincount(drawn.argmax(dim=1), minlength=VOCAB)
    assert counts.sum() == 40_000 and counts[columns].sum() == 40_000  # never a token the grammar forbids
    expected = torch.softmax(torch.tensor(logits) / temperature, dim=0)
    observed = counts[columns].double() / 40_000
    assert torch.allclose(observed, expected.double(), atol=0.01)  # 4+ standard errors at 40,000 draws


def test_the_nucleus_is_the_one_hf_sampling_keeps():
    torch.manual_seed(1)
    logits = torch.randn(64, 50) * 2
    for top_p in (0.05, 0.3, 0.9, 0.999):
        ours = torch.isfinite(nucleus(logits, top_p))
        theirs = torch.isfinite(TopPLogitsWarper(top_p)(None, logits.clone()))
        assert torch.equal(ours, theirs), top_p
        assert ours.sum(dim=1).min() >= 1


def test_the_scores_are_written_in_place_only_where_some_row_may_choose():
    scores = grammar_scores(3, [0.5, 0.2], [7, 9])
    before = scores.clone()
    torch.manual_seed(6)
    drawn = GumbelMaxSampler()(None, scores)
    assert drawn is scores and torch.equal(scores[:, [0, 1, 8, 10, 999]], before[:, [0, 1, 8, 10, 999]])
    assert (torch.isfinite(scores[:, [7, 9]]).sum(dim=1) == 1).all()


def test_top_p_draws_only_from_the_nucleus():
    logits, columns = [3.0, 2.9, -4.0, -5.0], [1, 2, 3, 4]
    torch.manual_seed(2)
    drawn = GumbelMaxSampler(1.0, top_p=0.9)(None, grammar_scores(5_000, logits, columns)).argmax(dim=1)
    assert set(drawn.tolist()) == {1, 2}  # the two likely tokens hold > 99 % of the mass


def test_rows_are_drawn_independently_and_reproducibly_for_a_seed():
    scores = torch.randn(300, VOCAB, generator=torch.Generator().manual_seed(3))
    hf = TemperatureLogitsWarper(1.3)(None, scores.clone())  # same tempering as HF's own warper
    torch.manual_seed(4)
    first = GumbelMaxSampler(1.3)(None, scores.clone()).argmax(dim=1)
    torch.manual_seed(4)
    assert torch.equal(GumbelMaxSampler(1.3)(None, scores.clone()).argmax(dim=1), first)
    torch.manual_seed(5)
    assert not torch.equal(GumbelMaxSampler(1.3)(None, scores.clone()).argmax(dim=1), first)
    assert len(set(first.tolist())) > 100  # unconstrained: draws spread over the vocabulary
    top = hf.argmax(dim=1)
    assert (first == top).float().mean() < 0.5  # not greedy


@pytest.mark.parametrize(("temperature", "top_p"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, 1.5)])
def test_bad_settings_are_refused(temperature, top_p):
    with pytest.raises(ValueError, match="temperature > 0 and 0 < top_p <= 1"):
        GumbelMaxSampler(temperature, top_p)
