"""The batched re-ranking (`LayerRunner.rerank_many`) scores exactly like the per-group `rerank`."""

from __future__ import annotations

import pytest

from neuron2graph.n2g.augment import AugmentConfig, AugmentItem, CausalAugmenter
from neuron2graph.n2g.runner import LayerRunner
from neuron2graph.testing import tiny_model

# prompts of different lengths; k = 0, 1, middle and last position of each
REQUESTS: list[tuple[list[int], int, list[int]]] = [
    ([5, 9, 12, 30, 7, 22], 0, [40, 41, 42]),
    ([5, 9, 12, 30, 7, 22], 1, [40, 41, 42, 43]),
    ([5, 9, 12, 30, 7, 22], 5, [40, 41]),
    ([8, 3], 1, [44, 45, 46]),
    ([11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47], 4, [50, 51, 52, 53, 54]),
    ([11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47], 10, [50, 51]),
    ([6], 0, [7, 8]),
]


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "opt", "qwen2", "gemma"])
def test_rerank_many_equals_per_group_rerank(family: str) -> None:
    lm = tiny_model(family, n_layers=2)
    runner = LayerRunner(lm, 0, [0], max_batch_tokens=40, max_rows=5)  # several batches
    batched = runner.rerank_many(REQUESTS)
    for (prompt, k, cands), got in zip(REQUESTS, batched, strict=True):
        want = runner.rerank(prompt, k, cands)
        assert got == pytest.approx(want, abs=1e-4)
        assert sorted(range(len(got)), key=lambda i: -got[i]) == sorted(
            range(len(want)), key=lambda i: -want[i])


def test_rerank_many_matches_brute_force_and_charges_prefix_once() -> None:
    lm = tiny_model("llama", n_layers=2)
    runner = LayerRunner(lm, 0, [0])
    batched = runner.rerank_many(REQUESTS)
    rows = {(tuple([*p[:k], c, *p[k + 1 :]]), k) for p, k, cs in REQUESTS for c in cs}
    # k = 0: whole rows; k >= 1: each distinct prefix once, then every candidate's suffix;
    # the last token of a row predicts nothing scored, so it never runs
    prefixes = {s[:k] for s, k in rows if k > 0}
    charged = (sum(len(s) - 1 for s, k in rows if k == 0) + sum(len(p) for p in prefixes)
               + sum(len(s) - k - 1 for s, k in rows if k > 0))
    assert runner.meters[0].token_layers == pytest.approx(charged * lm.n_layers)
    for (prompt, k, cands), got in zip(REQUESTS, batched, strict=True):
        full = [[*prompt[:k], c, *prompt[k + 1 :]] for c in cands]
        tok = [t[2] for t in runner.next_tokens(full, 1)]  # tok[p] = log p(token p | tokens < p)
        brute = [float(t[k + 1 :].sum()) + (float(t[k]) if k > 0 else 0.0) for t in tok]
        assert got == pytest.approx(brute, abs=1e-4)


def test_rerank_many_empty_and_shared_bill() -> None:
    lm = tiny_model("llama", n_layers=2)
    runner = LayerRunner(lm, 0, [3, 4])
    assert runner.rerank_many([]) == []
    with runner.shared([1.0, 3.0]):
        runner.rerank_many([([5, 9, 12], 1, [40, 41])])
    a, b = runner.meters
    # prefix [5] once + suffixes [40] and [41] (12, the last token, is only a target): 3
    # tokens at 2 layers, split 1:3
    assert (a.token_layers, b.token_layers) == pytest.approx((3 * 2 / 4, 3 * 2 * 3 / 4))


def test_augmenter_same_prompts_with_batched_rerank() -> None:
    lm = tiny_model("llama", n_layers=2)
    runner = LayerRunner(lm, 0, [0])
    cfg = AugmentConfig(n_substitutes=3, min_prob=0.0)
    items = [AugmentItem([1, 5, 9, 12, 30, 7], [1, 3, 5]), AugmentItem([1, 8, 3], [2])]
    per_group = CausalAugmenter(runner.next_tokens, cfg, rerank=runner.rerank).augment(items)
    batched = CausalAugmenter(runner.next_tokens, cfg,
                              rerank_many=runner.rerank_many).augment(items)
    assert batched == per_group
    assert sum(len(p) for p in batched) == 3 * 4


def test_batches_bound_padding_waste() -> None:
    from neuron2graph.n2g.runner import _batches

    lengths = [3, 7, 7, 7, 7, 8, 8, 9, 11]
    groups = list(_batches(lengths, max_tokens=1000, max_rows=100, max_waste=0.1))
    assert [i for g in groups for i in g] == list(range(len(lengths)))
    for g in groups:
        width = max(lengths[i] for i in g)
        assert len(g) == 1 or len(g) * width <= 1.1 * sum(lengths[i] for i in g)
    assert len(list(_batches(lengths, 1000, 100))) == 1  # no bound: one batch


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt", "gemma"])
def test_propose_equals_next_tokens_at_the_positions_read(family: str) -> None:
    lm = tiny_model(family, n_layers=2)
    runner = LayerRunner(lm, 0, [0], max_batch_tokens=30, max_rows=3)  # several batches
    seqs = [p for p, _k, _c in REQUESTS]
    at = [[0, 2], [3], [1, 0], [], [0, 4, 9], [5], [0]]
    got = runner.propose(seqs, at, 6)
    full = runner.next_tokens(seqs, 6)
    for want_at, props, (ids, logp, _tok) in zip(at, got, full, strict=True):
        assert sorted(props) == sorted(set(want_at))
        for p, (p_ids, p_logp) in props.items():
            assert p_ids == ids[p].tolist()
            assert p_logp == pytest.approx(logp[p].tolist(), abs=1e-4)


def test_augmenter_same_prompts_with_proposals_at_positions() -> None:
    lm = tiny_model("llama", n_layers=2)
    runner = LayerRunner(lm, 0, [0])
    cfg = AugmentConfig(n_substitutes=3, min_prob=0.0)
    items = [AugmentItem([1, 5, 9, 12, 30, 7], [1, 3]), AugmentItem([1, 8, 3], [0, 2])]
    plain = CausalAugmenter(runner.next_tokens, cfg, rerank_many=runner.rerank_many)
    fast = CausalAugmenter(runner.next_tokens, cfg, rerank_many=runner.rerank_many,
                           propose=runner.propose)
    assert fast.augment(items) == plain.augment(items)
    before = runner.meters[0].token_layers
    runner.propose([items[0].token_ids], [[2]], 3)
    assert runner.meters[0].token_layers - before == 3 * lm.n_layers  # cut after position 2
