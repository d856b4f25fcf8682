"""The recorder's running state against brute-force numpy on random data (no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neuron2graph.errors import N2GError
from neuron2graph.record.histogram import (
    FIRST_POSITIVE,
    N_BINS,
    bin_edges,
    bin_index,
    firing_rate,
)
from neuron2graph.record.state import Batch, LayerState, SampleState, window_keys
from neuron2graph.record.writer import load_checkpoint, save_checkpoint

N, K, T, S = 7, 4, 6, 5


def make_batch(start: int, tokens: np.ndarray, lengths: np.ndarray, bos: bool = True) -> Batch:
    b, t = tokens.shape
    length = torch.as_tensor(lengths, dtype=torch.int32)
    valid = torch.arange(t)[None, :] < length[:, None]
    if bos:
        valid[:, 0] = False
    fast = bos and bool((length == t).all())
    return Batch(window=torch.arange(start, start + b, dtype=torch.int64), length=length,
                 tokens=torch.as_tensor(tokens, dtype=torch.int32), valid=valid,
                 bos_only_excluded=fast)


def run_state(acts: np.ndarray, lengths: np.ndarray, batch_size: int, bos: bool = True,
              sample: int = S) -> tuple[LayerState, SampleState]:
    """Feed [W, T, N] activations through the state in batches of `batch_size` windows."""
    w = acts.shape[0]
    tokens = (np.arange(w * T).reshape(w, T) % 97).astype(np.int32)
    st = LayerState(N, K, T, sample)
    samp = SampleState(sample, T, seed=3)
    for s0 in range(0, w, batch_size):
        a = torch.as_tensor(acts[s0 : s0 + batch_size], dtype=torch.float32)
        batch = make_batch(s0, tokens[s0 : s0 + batch_size], lengths[s0 : s0 + batch_size], bos)
        win_max = st.window_max(a, batch)
        st.update_stats(a, batch, win_max)
        st.update_top(a, batch, win_max)
        st.update_sample(a, win_max, samp.offer(batch))
    return st, samp


def brute_force(acts: np.ndarray, lengths: np.ndarray, bos: bool = True) -> dict[str, np.ndarray]:
    w = acts.shape[0]
    valid = np.arange(T)[None, :] < lengths[:, None]
    if bos:
        valid[:, 0] = False
    masked = np.where(valid[:, :, None], acts, -np.inf)
    win_max = masked.max(1)  # [W, N]
    vals = acts[valid]  # [M, N]
    # top-K: by value desc, ties by earlier window
    top = np.stack([sorted(range(w), key=lambda i, n=n: (-win_max[i, n], i))[:K]
                    for n in range(N)])
    hist = np.stack([np.bincount(bin_index(vals[:, n]), minlength=N_BINS) for n in range(N)])
    return {"win_max": win_max, "top": top, "max": vals.max(0), "min": vals.min(0),
            "sum": vals.sum(0, dtype=np.float64), "n_pos": (vals > 0).sum(0), "hist": hist,
            "n_tokens": np.array(valid.sum())}


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_top_k_and_stats_match_brute_force(batch_size: int) -> None:
    rng = np.random.default_rng(batch_size)
    w = 23
    acts = (rng.normal(size=(w, T, N)) * rng.choice([0.01, 1, 50], size=N)).astype(np.float32)
    lengths = np.full(w, T)
    st, _ = run_state(acts, lengths, batch_size)
    ref = brute_force(acts, lengths)
    np.testing.assert_array_equal(st.sorted_top()["top_window"].numpy(), ref["top"])
    expect_max = np.take_along_axis(ref["win_max"].T, ref["top"], 1)
    np.testing.assert_array_equal(st.sorted_top()["top_max"].numpy(), expect_max)
    top = st.sorted_top()
    for n in range(N):
        for j in range(K):
            win = ref["top"][n, j]
            np.testing.assert_array_equal(top["top_acts"][n, j].numpy(), acts[win, :, n])
            np.testing.assert_array_equal(top["top_tokens"][n, j].numpy(),
                                          np.arange(win * T, win * T + T) % 97)
    np.testing.assert_array_equal(st.max.numpy(), ref["max"])
    np.testing.assert_array_equal(st.min.numpy(), ref["min"])
    np.testing.assert_allclose(st.sum.numpy(), ref["sum"], rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(st.n_pos().numpy(), ref["n_pos"])
    np.testing.assert_array_equal(st.hist.view(N, N_BINS).numpy(), ref["hist"])
    assert int(st.hist.view(N, N_BINS)[0].sum()) == int(ref["n_tokens"])


def test_ties_go_to_the_earlier_window() -> None:
    w = 10
    acts = np.zeros((w, T, N), dtype=np.float32)
    acts[:, 2, :] = 1.0  # every window has the same max
    acts[7, 3, 0] = 2.0  # except one, for neuron 0
    st, _ = run_state(acts, np.full(w, T), batch_size=3)
    assert st.sorted_top()["top_window"][0].tolist() == [7, 0, 1, 2]
    assert st.sorted_top()["top_window"][1].tolist() == [0, 1, 2, 3]


def test_padding_and_no_bos() -> None:
    rng = np.random.default_rng(5)
    w = 11
    acts = rng.normal(size=(w, T, N)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=w)
    acts[np.arange(T)[None, :] >= lengths[:, None]] = 1e6  # padding must never count
    st, _ = run_state(acts, lengths, batch_size=4, bos=False)
    ref = brute_force(acts, lengths, bos=False)
    np.testing.assert_array_equal(st.sorted_top()["top_window"].numpy(), ref["top"])
    np.testing.assert_array_equal(st.max.numpy(), ref["max"])
    np.testing.assert_array_equal(st.hist.view(N, N_BINS).numpy(), ref["hist"])
    assert st.sorted_top()["top_len"][0].tolist() == [int(lengths[i]) for i in ref["top"][0]]


def test_bos_position_is_excluded() -> None:
    acts = np.zeros((4, T, N), dtype=np.float32)
    acts[:, 0, :] = 100.0  # attention-sink-like BOS activation
    acts[2, 4, :] = 1.0
    st, _ = run_state(acts, np.full(4, T), batch_size=2)
    assert st.max.tolist() == [1.0] * N
    assert st.sorted_top()["top_window"][:, 0].tolist() == [2] * N


def test_nan_makes_the_sum_non_finite() -> None:
    acts = np.ones((3, T, N), dtype=np.float32)
    acts[1, 3, 2] = np.nan
    st = LayerState(N, K, T, 0)
    a = torch.as_tensor(acts)
    batch = make_batch(0, np.zeros((3, T), dtype=np.int32), np.full(3, T))
    total = st.update_stats(a, batch, st.window_max(a, batch))
    assert torch.isfinite(total).tolist() == [n != 2 for n in range(N)]


@pytest.mark.parametrize("padded", [False, True])
def test_histogram_of_many_neurons_is_counted_block_by_block_exactly(padded: bool) -> None:
    """More neurons than one histogram block (HIST_BLOCK), the last block partial: every
    neuron's counts equal a brute-force bincount of its own values, on the strided BOS-only view
    and on the gathered padded path."""
    from neuron2graph.record.state import HIST_BLOCK

    n, w, t = 2 * HIST_BLOCK + 22, 9, 5
    rng = np.random.default_rng(11)
    acts = (rng.standard_normal((w, t, n)) * rng.choice([1e-7, 0.01, 3, 5e3], size=n))
    acts = acts.astype(np.float32)
    acts[0, 1, :3] = [0.0, -0.0, np.inf]
    lengths = rng.integers(1, t + 1, size=w) if padded else np.full(w, t)
    st = LayerState(n, 2, t, 0)
    tokens = np.zeros((w, t), dtype=np.int32)
    for s0 in range(0, w, 4):
        a = torch.as_tensor(acts[s0 : s0 + 4])
        batch = make_batch(s0, tokens[s0 : s0 + 4], lengths[s0 : s0 + 4])
        assert batch.bos_only_excluded is not padded
        st.update_stats(a, batch, st.window_max(a, batch))
    valid = np.arange(t)[None, :] < lengths[:, None]
    valid[:, 0] = False
    vals = acts[valid]
    ref = np.stack([np.bincount(bin_index(vals[:, j]), minlength=N_BINS) for j in range(n)])
    np.testing.assert_array_equal(st.hist.view(n, N_BINS).numpy(), ref)


def test_sample_is_the_smallest_keys_whatever_the_batching() -> None:
    rng = np.random.default_rng(1)
    w = 40
    acts = rng.normal(size=(w, T, N)).astype(np.float32)
    keys = window_keys(np.arange(w), 3)
    want = np.sort(np.argsort(keys)[:S])
    results = []
    for bs in (1, 4, 40):
        st, samp = run_state(acts, np.full(w, T), batch_size=bs)
        order = samp.order()
        assert samp.window[order].tolist() == want.tolist()
        np.testing.assert_array_equal(
            st.sample_acts[order].numpy(), acts[want].astype(np.float16))
        np.testing.assert_array_equal(
            st.sample_max[order].numpy(), acts[want, 1:, :].max(1))
        results.append(st.sample_acts[order].numpy())
    assert all(np.array_equal(results[0], r) for r in results)


def test_sample_keys_are_uniform_enough() -> None:
    keys = window_keys(np.arange(20000), 0)
    assert len(set(keys.tolist())) == 20000
    low = np.argsort(keys)[:2000]
    # picks spread over the stream: each tenth holds about a tenth of the sample
    counts = np.bincount(low // 2000, minlength=10)
    assert counts.min() > 150 and counts.max() < 250
    assert not np.array_equal(window_keys(np.arange(10), 0), window_keys(np.arange(10), 1))


def test_histogram_bins_agree_with_edges() -> None:
    edges = bin_edges()
    assert len(edges) == N_BINS + 1 and np.all(np.diff(edges) > 0)
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.normal(size=2000) * 10.0 ** rng.uniform(-7, 5, size=2000),
        [0.0, -0.0, 1.0, -1.0, 2.0**-20, -(2.0**-20), 2.0**12, -(2.0**12), 1e30, -1e30],
        edges[1:-1],
    ]).astype(np.float32)
    got = bin_index(x)
    pos = x > 0
    # positive values: bins are [lo, hi); zero and negative values: mirror image, (lo, hi]
    want_pos = np.searchsorted(edges, x, side="right") - 1
    want_neg = np.searchsorted(edges, x, side="left") - 1
    want = np.where(pos, want_pos, want_neg)
    np.testing.assert_array_equal(got, want)
    assert set(got[x == 0].tolist()) == {FIRST_POSITIVE - 1}


def test_firing_rate_within_its_error_bound() -> None:
    rng = np.random.default_rng(2)
    vals = rng.gamma(0.5, 2.0, size=(5000, N)).astype(np.float32) - 0.3
    vals[:, 3] = -np.abs(vals[:, 3])  # never positive: rate 0
    hist = np.stack([np.bincount(bin_index(vals[:, n]), minlength=N_BINS) for n in range(N)])
    vmax = vals.max(0)
    rate, err = firing_rate(hist, vmax, len(vals))
    exact = (vals >= 0.5 * vmax).mean(0)
    exact[3] = 0.0
    assert np.all(np.abs(rate - exact) <= err + 1e-6)
    assert rate[3] == 0 and err[3] == 0
    assert np.all(err < 0.05)


def test_checkpoint_generations_survive_a_torn_write(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    acts = rng.normal(size=(9, T, N)).astype(np.float32)
    st, samp = run_state(acts, np.full(9, T), batch_size=3)
    save_checkpoint(tmp_path, {0: st}, samp, {"batches": 3, "windows": 9})
    folder = tmp_path / "record" / "checkpoint"
    (folder / "g4-layer0.safetensors").write_bytes(b"half-written")  # killed before the marker
    fresh, fresh_sample = LayerState(N, K, T, S), SampleState(S, T, seed=3)
    progress = load_checkpoint(tmp_path, {0: fresh}, fresh_sample)
    assert progress is not None and progress["windows"] == 9
    for name in LayerState.NAMES:
        assert torch.equal(getattr(fresh, name), getattr(st, name)), name
    assert torch.equal(fresh_sample.window, samp.window)
    save_checkpoint(tmp_path, {0: st}, samp, {"batches": 6, "windows": 18})
    assert sorted(p.name for p in folder.iterdir()) == [
        "g6-layer0.safetensors", "g6-sample.safetensors", "progress.json"]
    (folder / "g6-layer0.safetensors").unlink()
    with pytest.raises(N2GError, match="damaged"):
        load_checkpoint(tmp_path, {0: LayerState(N, K, T, S)}, SampleState(S, T, seed=3))


def test_layers_folded_in_parallel_equal_the_sequential_fold() -> None:
    """`fold_batch` with a pool folds layers on threads (each with its own scratch buffers):
    every buffer of every layer and the sample must equal the one-thread fold, and a NaN in one
    layer must still raise."""
    from concurrent.futures import ThreadPoolExecutor

    from neuron2graph.record.fold import fold_batch

    rng = np.random.default_rng(5)
    w, layers = 24, (0, 3, 7)
    acts = {layer: rng.standard_normal((w, T, N)).astype(np.float32) * (layer + 1)
            for layer in layers}
    lengths = rng.integers(2, T + 1, size=w)
    tokens = (np.arange(w * T).reshape(w, T) % 97).astype(np.int32)
    runs = []
    for pool in (None, ThreadPoolExecutor(2)):
        states = {layer: LayerState(N, K, T, S) for layer in layers}
        samp = SampleState(S, T, seed=3)
        for s0 in range(0, w, 5):
            batch = make_batch(s0, tokens[s0 : s0 + 5], lengths[s0 : s0 + 5])
            fold_batch(states, samp, batch,
                       {la: torch.as_tensor(a[s0 : s0 + 5]) for la, a in acts.items()}, pool)
        runs.append((states, samp))
        if pool is not None:
            pool.shutdown()
    (seq, seq_sample), (par, par_sample) = runs
    for layer in layers:
        for name, value in seq[layer].tensors("").items():
            assert torch.equal(value, par[layer].tensors("")[name]), (layer, name)
    for name, value in seq_sample.tensors("").items():
        assert torch.equal(value, par_sample.tensors("")[name]), name
    assert int(par[7].hist.sum()) == int(sum(lengths) - w) * N  # every counted value once
    bad = {la: torch.as_tensor(a[:5]) for la, a in acts.items()}
    bad[3][1, 2, 4] = float("nan")
    batch = make_batch(100, tokens[:5], np.full(5, T))
    with pytest.raises(N2GError, match="3:4"), ThreadPoolExecutor(2) as pool:
        fold_batch(par, par_sample, batch, bad, pool)
