"""Each N2G stage on its own, with hand-written activation functions (no model)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch

from neuron2graph.errors import N2GError
from neuron2graph.n2g.augment import (
    AugmentConfig,
    AugmentItem,
    CausalAugmenter,
    important_positions,
)
from neuron2graph.n2g.build import BuildConfig, Prompt, build_graph
from neuron2graph.n2g.prune import PruneConfig, PruneSearch, official_prune_tokens, prune
from neuron2graph.n2g.saliency import (
    DELETE,
    MEAN_EMBEDDING,
    Mask,
    activating_positions,
    finish_saliency,
    plan_saliency,
    resolve_mask,
    saliency,
)

KEY_ID, TRIGGER = 7, 3


def trigger_fn(seqs: Sequence[Sequence[int]]) -> list[list[float]]:
    """Fires 10 on KEY_ID when TRIGGER is among the 4 tokens before it, 2 without; else 0."""
    out = []
    for s in seqs:
        row = []
        for j, t in enumerate(s):
            if t != KEY_ID:
                row.append(0.0)
            else:
                row.append(10.0 if TRIGGER in s[max(0, j - 4) : j] else 2.0)
        out.append(row)
    return out


def counting(fn):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def wrapped(seqs):  # type: ignore[no-untyped-def]
        calls.append(len(seqs))
        return fn(seqs)

    return wrapped, calls


# ------------------------------------------------------------------------------------- prune
def test_prune_finds_shortest_context_and_keeps_post_context() -> None:
    ids = [9, 9, 9, TRIGGER, 9, 9, KEY_ID, 1, 2, 3, 4, 5, 6, 7]
    acts = trigger_fn([ids])[0]
    fn, calls = counting(trigger_fn)
    res = prune(ids, acts, fn)
    assert res.threshold_met and res.token_ids == [TRIGGER, 9, 9, KEY_ID, 1, 2, 3, 4, 5]
    assert res.key_index == 3 and res.source_start == 3
    assert calls == [7]  # one batch: lengths 1..7 (the whole available context)


def test_prune_is_exact_where_activation_is_not_monotone() -> None:
    # activation meets the threshold at length 3, drops at 4-10, meets it again at 11
    def fn(seqs: Sequence[Sequence[int]]) -> list[list[float]]:
        return [[0.0] * (len(s) - 1) + [10.0 if len(s) in (3, 11, 12) else 1.0] for s in seqs]

    ids = [*list(range(20, 31)), KEY_ID]
    res = prune(ids, [0.0] * 11 + [10.0], fn)
    assert res.threshold_met and len(res.token_ids) == 3


def test_prune_keeps_a_firing_key_token_firing() -> None:
    # Key token at 6.0 with a_max 10 (normalised 0.6, it fires). Context length 2 keeps 3.5
    # (>= 50% of 6.0, the paper's rule) but 0.35 no longer fires; length 4 keeps 5.5 (fires).
    def fn(seqs: Sequence[Sequence[int]]) -> list[list[float]]:
        key = {1: 1.0, 2: 3.5, 3: 4.0, 4: 5.5}
        return [[0.0] * (len(s) - 1) + [key.get(len(s), 6.0)] for s in seqs]

    ids = [*list(range(20, 26)), KEY_ID]
    acts = [0.0] * 6 + [6.0]
    res = prune(ids, acts, fn, a_max=10.0)
    assert res.threshold_met and len(res.token_ids) == 4 and res.pruned_activation == 5.5
    paper = prune(ids, acts, fn, PruneConfig(keep_firing=None), a_max=10.0)
    assert len(paper.token_ids) == 2 and paper.pruned_activation == 3.5
    # An example that does not fire to begin with only needs the paper's 50%.
    weak = prune(ids, [0.0] * 6 + [4.0], fn, a_max=10.0)
    assert len(weak.token_ids) == 2


def test_prune_never_met_keeps_everything_and_flags_it() -> None:
    ids = [*list(range(20, 40)), KEY_ID]
    acts = [0.0] * 20 + [10.0]
    fn, calls = counting(lambda seqs: [[0.0] * (len(s) - 1) + [1.0] for s in seqs])
    res = prune(ids, acts, fn)
    assert not res.threshold_met and res.token_ids == ids and res.lengths_tried == 21
    assert calls == [8, 8, 5]  # chunks 1-8, 9-16, 17-21


def test_prune_long_context_runs_equal_chunks_and_stops_in_the_first_that_meets() -> None:
    # the threshold is first met at context length 35: chunks 1-8 ... 33-40 run, not 33-64
    def fn(seqs: Sequence[Sequence[int]]) -> list[list[float]]:
        return [[0.0] * (len(s) - 1) + [10.0 if len(s) >= 35 else 1.0] for s in seqs]

    ids = [*list(range(100, 160)), KEY_ID]
    counted, calls = counting(fn)
    res = prune(ids, [0.0] * 60 + [10.0], counted)
    assert res.threshold_met and len(res.token_ids) == 35  # the key ends the example
    assert calls == [8, 8, 8, 8, 8]


def test_prune_official_accepts_its_last_try() -> None:
    ids = [*list(range(20, 60)), KEY_ID]
    res = prune(ids, [0.0] * 40 + [10.0],
                lambda seqs: [[0.0] * (len(s) - 1) + [1.0] for s in seqs],
                PruneConfig(strategy="official"))
    assert not res.threshold_met and len(res.token_ids) == 30 and res.lengths_tried == 6


def test_prune_key_at_position_zero_and_short_prompt() -> None:
    res = prune([KEY_ID, 1, 2], [2.0, 0.0, 0.0], trigger_fn)
    assert res.key_index == 0 and res.token_ids == [KEY_ID, 1, 2] and res.threshold_met
    res = prune([KEY_ID], [2.0], trigger_fn)
    assert res.token_ids == [KEY_ID]


def test_prune_keeps_bos_in_front() -> None:
    ids = [1, 9, 9, TRIGGER, KEY_ID]
    res = prune(ids, trigger_fn([ids])[0], trigger_fn, bos_id=1)
    assert res.token_ids == [1, TRIGGER, KEY_ID] and res.key_index == 2


def test_prune_rejects_nan_and_length_mismatch() -> None:
    with pytest.raises(N2GError, match="NaN"):
        PruneSearch([1, 2], [math.nan, 1.0])
    with pytest.raises(N2GError, match="differ in length"):
        PruneSearch([1, 2], [1.0])
    with pytest.raises(N2GError, match="empty example"):
        PruneSearch([], [])


def test_prune_of_non_firing_example_is_flagged_without_forwards() -> None:
    search = PruneSearch([1, 2, 3], [-1.0, -2.0, -0.5])
    assert search.done and search.pending() == [] and not search.result().threshold_met


def test_official_prune_token_estimate() -> None:
    assert official_prune_tokens(40, 3) == 5
    assert official_prune_tokens(40, 7) == 15
    assert official_prune_tokens(40, None) == 5 + 10 + 15 + 20 + 25 + 30
    assert official_prune_tokens(2, None) == 3


# ----------------------------------------------------------------------------------- saliency
def test_saliency_rows_and_variants_only_where_needed() -> None:
    ids = [9, TRIGGER, 9, KEY_ID, 9, 9]
    acts = trigger_fn([ids])[0]
    rows = activating_positions(acts, 10.0, 0.5)
    assert rows == [3]
    plan = plan_saliency(ids, acts, rows, 0)
    assert plan.masked == [0, 1, 2, 3] and all(len(v) == 4 for v in plan.variants)
    imp = finish_saliency(plan, trigger_fn(plan.variants))
    assert imp.rows[3][:4] == pytest.approx([0.0, 0.8, 0.0, 1.0])
    assert imp.rows[3][4:] == [0.0, 0.0] and imp.undefined_rows == []


def test_saliency_delete_strategy_reads_shifted_position() -> None:
    ids = [9, TRIGGER, KEY_ID]
    imp = saliency(ids, trigger_fn([ids])[0], [2], trigger_fn, None)
    assert imp.rows[2] == pytest.approx([0.0, 0.8, 0.0])


def test_saliency_undefined_and_nan_rows() -> None:
    ids = [9, KEY_ID]
    imp = saliency(ids, [0.0, 0.0], [1], trigger_fn, 0)
    assert imp.undefined_rows == [1] and imp.rows[1] == [0.0, 0.0]
    with pytest.raises(N2GError, match="NaN"):
        saliency(ids, [0.0, 5.0], [1], lambda s: [[math.nan] * len(x) for x in s], 0)
    assert activating_positions([1.0, 2.0], 0.0, 0.5) == []
    assert activating_positions([1.0, 2.0], math.nan, 0.5) == []


def test_mask_id_comes_from_the_tokenizer() -> None:
    class Tok:
        pad_token_id = 42
        unk_token_id = None
        eos_token_id = 5

    assert resolve_mask(Tok(), "pad") == Mask(42)
    assert resolve_mask(Tok(), "delete") == DELETE
    assert resolve_mask(Tok(), "id:7") == Mask(7)
    assert resolve_mask(Tok(), "mean_embedding") == MEAN_EMBEDDING
    with pytest.raises(N2GError, match="no unk token"):
        resolve_mask(Tok(), "unk")
    with pytest.raises(N2GError, match="unknown mask"):
        resolve_mask(Tok(), "mean")
    Tok.pad_token_id = None  # type: ignore[assignment]
    assert resolve_mask(Tok(), "pad") == Mask(5)


# -------------------------------------------------------------------------------------- build
def test_build_walks_back_with_wildcards_and_thresholds() -> None:
    p = Prompt(["A", "q", "r", "B", "C"], [0.0, 0.0, 0.0, 8.0, 3.0],
               {3: [0.9, 0.1, 0.5, 1.0, 0.0]}, example=4)
    g = build_graph("0:1", [p], a_max=10.0)
    assert set(g.activating_tokens) == {"B"}
    assert g.predict(["A", "z", "z", "B"])[3] == pytest.approx(0.8)
    assert g.predict(["z", "z", "z", "B"])[3] == 0.0
    assert build_graph("0:1", [p], a_max=0.0).is_empty()  # never fires: empty, no crash
    with pytest.raises(N2GError, match="NaN"):
        build_graph("0:1", [Prompt(["B"], [math.nan])], a_max=1.0)
    with pytest.raises(ValueError, match="no importance row"):
        build_graph("0:1", [Prompt(["B"], [1.0])], a_max=1.0)


def test_build_skips_bos_and_folds_only_when_asked() -> None:
    p = Prompt(["<s>", " The"], [0.0, 1.0], {1: [1.0, 1.0]}, skip_first=True)
    g = build_graph("0:1", [p], a_max=1.0)
    assert g.n_nodes() == 1 and g.predict(["the", " The"]) == [0.0, 1.0]
    f = build_graph("0:1", [p], a_max=1.0, config=BuildConfig(fold=True))
    assert f.predict(["the"]) == [1.0]


# ------------------------------------------------------------------------------------ augment
def _fake_next(seqs: Sequence[Sequence[int]], k: int) -> list[tuple[torch.Tensor, ...]]:
    """Every position proposes ids 50.. with falling probability; token log-prob favours 51."""
    out = []
    for s in seqs:
        n = len(s)
        ids = torch.arange(50, 50 + k).repeat(n, 1)
        logp = torch.log(torch.tensor([0.5 / 2**i for i in range(k)])).repeat(n, 1)
        tok = torch.tensor([0.0 if t != 51 else 1.0 for t in s])
        out.append((ids, logp, tok))
    return out


def test_causal_augmenter_reranks_and_respects_limits() -> None:
    aug = CausalAugmenter(_fake_next, AugmentConfig(n_substitutes=2, min_prob=0.1),
                          exclude=[52])
    out = aug.augment([AugmentItem([1, 2, 3], [0, 2])])
    # position 0 has no left context; candidates 50, 51, 53 pass min_prob (52 is excluded)
    assert out == [[[1, 2, 51], [1, 2, 50]]]


def test_empty_augmentation() -> None:
    aug = CausalAugmenter(_fake_next, AugmentConfig(min_prob=0.9))
    assert aug.augment([AugmentItem([1, 2], [1])]) == [[]]
    assert aug.augment([]) == []
    assert CausalAugmenter(_fake_next).augment([AugmentItem([1, 2], [])]) == [[]]
    assert important_positions([0.9, 0.1, 0.8], 2, 0.75) == [0, 2]
    assert important_positions([0.9, 0.1, 0.8], 2, 0.75, skip_first=True) == [2]
