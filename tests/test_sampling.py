"""Inverse-CDF sampling (bgit/models/sampling.py): the draws follow the distribution, ids of
probability 0 are never drawn, and a greedy ``generate`` with the sampler samples the warped
distribution ``generate(do_sample=True)`` would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bgit.models.sampling import BLOCK, sample_categorical, sampling_processors
from rollout_helpers import char_tokenizer, one_thread, tiny_llama


def draw(probs: torch.Tensor, rows: int, times: int) -> np.ndarray:
    """Counts per id of ``rows * times`` draws from the one distribution ``probs`` [V]."""
    counts = np.zeros(len(probs), dtype=np.int64)
    batch = probs.expand(rows, -1).contiguous()
    for _ in range(times):
        counts += np.bincount(sample_categorical(batch).numpy(), minlength=len(probs))
    return counts


def assert_frequencies(counts: np.ndarray, probs: np.ndarray) -> None:
    """Every id within 5 standard deviations of its expected count (plus one for tiny ones)."""
    n = counts.sum()
    expected = n * probs
    allowed = 5 * np.sqrt(expected * (1 - probs)) + 1
    worst = np.argmax(np.abs(counts - expected) - allowed)
    assert np.all(np.abs(counts - expected) <= allowed), (worst, counts[worst], expected[worst])


def test_draws_follow_the_distribution_across_blocks_and_the_padded_last_one():
    torch.manual_seed(0)
    vocab = 3 * BLOCK + 100  # the last block is padded
    logits = torch.randn(vocab, dtype=torch.float64) * 2
    logits[[0, 5, BLOCK - 1, BLOCK, 2 * BLOCK + 7, vocab - 1]] = float("-inf")  # block edges and the last id
    logits[vocab - 2] = 3.0  # heavy mass next to a zero at the very end
    probs = torch.softmax(logits, 0).float()
    counts = draw(probs, rows=2000, times=100)
    assert counts.sum() == 200_000
    assert counts[probs.numpy() == 0].sum() == 0
    assert_frequencies(counts, probs.double().numpy())


def test_ids_of_probability_zero_are_never_drawn_even_beside_all_the_mass():
    vocab = 2 * BLOCK + 3
    for only in (0, BLOCK - 1, BLOCK, vocab - 1):
        probs = torch.zeros(vocab)
        probs[only] = 1.0
        assert set(sample_categorical(probs.expand(500, -1)).tolist()) == {only}
    # Almost all the mass on one id, a sliver on another, zeros everywhere else: the rounding of
    # float64 sums must not push a draw onto a zero beside them.
    probs = torch.zeros(vocab)
    probs[BLOCK + 1], probs[vocab - 2] = 1.0, 1e-7
    drawn = np.concatenate([sample_categorical(probs.expand(5000, -1)).numpy() for _ in range(40)])
    assert set(drawn.tolist()) <= {BLOCK + 1, vocab - 2}


@pytest.mark.parametrize("uniform", [0.0, 1 - 2**-24])  # torch.rand's float32 extremes
def test_the_extreme_uniforms_land_on_ids_of_positive_probability(uniform, monkeypatch):
    vocab = 3 * BLOCK + 5
    probs = torch.zeros(4, vocab)
    probs[0, [BLOCK + 3, 2 * BLOCK]] = 0.5  # whole zero blocks before, between and after
    probs[1, [0, vocab - 1]] = 0.5
    probs[2, [BLOCK - 1, BLOCK]] = 0.5  # both sides of a block edge
    probs[3, 2 * BLOCK + 9] = 1.0
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.full(shape, uniform, dtype=torch.float32))
    drawn = sample_categorical(probs)
    assert all(probs[row, token] > 0 for row, token in enumerate(drawn.tolist())), drawn
    edge = 0 if uniform == 0 else -1  # the first or the last id of positive probability
    assert drawn.tolist() == [torch.nonzero(row)[edge].item() for row in probs]


def test_rows_are_drawn_independently_from_their_own_distributions():
    probs = torch.zeros(3, 10)
    probs[0, 2] = probs[1, 7] = 1.0
    probs[2, :] = 1.0  # unnormalised: any positive total
    torch.manual_seed(1)
    drawn = torch.stack([sample_categorical(probs) for _ in range(2000)])
    assert set(drawn[:, 0].tolist()) == {2} and set(drawn[:, 1].tolist()) == {7}
    assert_frequencies(np.bincount(drawn[:, 2].numpy(), minlength=10), np.full(10, 0.1))


def test_the_global_seed_fixes_the_draws():
    probs = torch.softmax(torch.randn(8, 1000), -1)
    torch.manual_seed(5)
    first = sample_categorical(probs)
    torch.manual_seed(5)
    again = sample_categorical(probs)
    torch.manual_seed(6)
    other = sample_categorical(probs)
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("settings", [dict(temperature=1.0), dict(temperature=0.6, top_k=12),
                                      dict(temperature=1.3, top_p=0.8)])
def test_greedy_generate_with_the_sampler_samples_the_warped_distribution(settings):
    """One decoding step of a tiny model for many copies of a context: the first tokens'
    frequencies against softmax of its logits, warped by transformers' own warpers."""
    from transformers import GenerationConfig, LogitsProcessorList

    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer))
    with torch.no_grad():
        model.lm_head.weight.mul_(1 / 10)  # a spread-out distribution: many ids to count
    context = torch.tensor([tokenizer("The sea")["input_ids"]])
    with torch.no_grad():
        scores = model(context).logits[0, -1:].float()
    for warper in sampling_processors(**settings)[:-1]:
        scores = warper(context, scores)
    expected = torch.softmax(scores, -1)[0].double().numpy()
    config = GenerationConfig(max_new_tokens=1, do_sample=False, temperature=None, top_k=None, top_p=None,
                              pad_token_id=0, eos_token_id=None)
    counts = np.zeros(len(expected), dtype=np.int64)
    torch.manual_seed(0)
    with one_thread(), torch.no_grad():
        for _ in range(10):
            out = model.generate(input_ids=context.expand(1000, -1), attention_mask=torch.ones(1000, context.shape[1]),
                                 generation_config=config,
                                 logits_processor=LogitsProcessorList(sampling_processors(**settings)))
            counts += np.bincount(out[:, -1].numpy(), minlength=len(expected))
    assert counts[expected == 0].sum() == 0
    assert expected.max() < 0.5  # the check is not on a near-one-hot distribution
    assert_frequencies(counts, expected)
