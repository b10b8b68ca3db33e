"""The 14-row compact head: its alphabet comes from the real tokenizer, its loss is the full
vocabulary's, and its full-vocabulary copy is an ordinary checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2ForCausalLM
import torch.nn.functional as F

from experiments.basemodel.compact_head import (
    CompactVocabulary,
    compact_config,
    compact_logits,
    expand_to_full_vocabulary,
)
from experiments.models.loading import load_model, tiny_config
from lvdata import encode, simulate



def compact_model(vocabulary, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised ``tiny`` model with the 14-row compact head."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Qwen2ForCausalLM(compact_config(tiny_config(), vocabulary)).eval()


def llmtime_texts(n: int = 3, steps: int = 30) -> list[str]:
    trajectories, _ = simulate(n, n_steps=steps, seed=3)
    return encode(trajectories, np.full(n, 0.2))


def test_the_alphabet_is_looked_up_from_the_tokenizer(qwen_tokenizer, vocabulary):
    assert vocabulary.characters == "0123456789.,;"
    for char, token in zip(vocabulary.characters, vocabulary.alphabet_ids):
        assert qwen_tokenizer.encode(char, add_special_tokens=False) == [token]
    assert (vocabulary.n_rows, vocabulary.other_row, vocabulary.other_count) == (14, 13, 151_936 - 13)
    log_multiplicity = vocabulary.log_multiplicity()
    assert torch.equal(log_multiplicity[:13], torch.zeros(13))
    assert log_multiplicity[13].item() == pytest.approx(np.log(151_923))


def test_encode_text_is_the_tokenizer_then_row_of_token(qwen_tokenizer, vocabulary):
    rows = vocabulary.row_of_token()
    assert rows.shape == (151_936,) and int((rows != vocabulary.other_row).sum()) == 13
    for text in llmtime_texts():
        tokens = torch.tensor(qwen_tokenizer.encode(text, add_special_tokens=False))
        assert torch.equal(rows[tokens], torch.from_numpy(vocabulary.encode_text(text)))
    with pytest.raises(ValueError, match="outside the LLMTIME alphabet"):
        vocabulary.encode_text("1.00, 2.00")


def test_a_tokenizer_that_splits_the_alphabet_is_refused(qwen_tokenizer):
    with pytest.raises(ValueError, match="distinct token id"):
        CompactVocabulary("0123456789.,;", (15,) * 13, 151_936)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        CompactVocabulary.from_tokenizer(qwen_tokenizer, vocab_size=20)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_the_compact_loss_is_the_full_vocabulary_loss(qwen_tokenizer, vocabulary, compact_and_full, dtype,
                                                      tolerance):
    compact, full = (model.to(dtype) for model in compact_and_full)
    texts = llmtime_texts()
    compact_ids = torch.from_numpy(np.stack([vocabulary.encode_text(t[:100]) for t in texts]))  # (3, 100)
    full_ids = torch.tensor([qwen_tokenizer.encode(t[:100], add_special_tokens=False) for t in texts])
    def mean_nats(logits: torch.Tensor, ids: torch.Tensor) -> float:  # next-token cross-entropy, in float64
        return float(F.cross_entropy(logits[:, :-1].double().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)))

    with torch.no_grad():
        compact_loss = mean_nats(compact_logits(compact, compact_ids, vocabulary.log_multiplicity(dtype)), compact_ids)
        full_loss = mean_nats(full(input_ids=full_ids).logits, full_ids)  # (3, 100, 151936) logits
    assert compact_loss == pytest.approx(full_loss, rel=tolerance)
    assert 11.0 < compact_loss < 13.0  # a random model: about log(151,936) = 11.93 nats


def test_the_full_copy_shares_one_row_for_every_other_token(vocabulary, compact_and_full):
    compact, full = compact_and_full
    embedding = full.get_input_embeddings().weight  # (V, d)
    assert full.get_output_embeddings().weight.data_ptr() == embedding.data_ptr()  # tied, like Qwen2.5
    rows = compact.get_input_embeddings().weight
    others = vocabulary.row_of_token() == vocabulary.other_row
    assert torch.equal(embedding[list(vocabulary.alphabet_ids)], rows[:13])
    assert torch.equal(embedding[others], rows[13].expand(int(others.sum()), -1))
    for name, value in compact.state_dict().items():
        if "embed_tokens" not in name and "lm_head" not in name:
            assert torch.equal(full.state_dict()[name], value), name


def test_the_full_copy_saves_and_loads_as_an_ordinary_checkpoint(qwen_tokenizer, compact_and_full, tmp_path):
    _, full = compact_and_full
    full.save_pretrained(tmp_path)
    qwen_tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config.vocab_size == tiny_config().vocab_size
    ids = torch.tensor([qwen_tokenizer.encode("1.25,0.50;1.30,0.48;", add_special_tokens=False)])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, full(input_ids=ids).logits)


def test_compact_config_keeps_the_architecture(vocabulary):
    config, full = compact_config(tiny_config(), vocabulary), tiny_config()
    assert config.vocab_size == 14 and config.eos_token_id is None
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                "intermediate_size", "tie_word_embeddings", "rms_norm_eps", "max_position_embeddings"):
        assert getattr(config, key) == getattr(full, key), key
    with pytest.raises(ValueError, match="rows"):
        expand_to_full_vocabulary(compact_model(vocabulary), tiny_config(),
                                  CompactVocabulary("0123456789", tuple(range(15, 25)), 151_936))
