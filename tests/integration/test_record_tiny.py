"""Record a tiny model, read it back with Run, and check it against a brute-force pass."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from record_fixtures import tiny_documents

from neuron2graph.corpus import iter_windows
from neuron2graph.errors import N2GError
from neuron2graph.models import LoadedModel, layer_activations
from neuron2graph.record import RecordConfig, record
from neuron2graph.record.histogram import N_BINS, bin_index
from neuron2graph.store import Run
from neuron2graph.testing import tiny_model

WINDOW = 16
CONFIG = RecordConfig(window=WINDOW, top_k=5, sample=12, batch_size=4, max_tokens=2500)


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return tiny_model("llama", n_layers=3)


@pytest.fixture(scope="module")
def run(lm: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("rec") / "run"
    windows = iter_windows(tiny_documents(), lm.tokenizer, length=WINDOW)
    return record(lm, windows, [0, 2], out, CONFIG, progress=False,
                  corpus={"spec": "tiny-docs"})


def all_windows(lm: LoadedModel) -> tuple[list[tuple[int, ...]], dict[int, np.ndarray]]:
    """Brute force: every recorded window and its activations, [W, T, N] per layer (NaN pads)."""
    seen, wins = 0, []
    for w in iter_windows(tiny_documents(), lm.tokenizer, length=WINDOW):
        if seen >= 2500:
            break
        seen += len(w.token_ids)
        wins.append(w.token_ids)
    acts = {0: [], 2: []}
    for seq in wins:
        out = layer_activations(lm, torch.tensor([seq]), [0, 2])
        for layer in acts:
            row = np.full((WINDOW, lm.n_neurons), np.nan, dtype=np.float32)
            row[: len(seq)] = out[layer][0].numpy()
            acts[layer].append(row)
    return wins, {k: np.stack(v) for k, v in acts.items()}


def test_manifest_and_layout(run: Run, lm: LoadedModel) -> None:
    m = run.manifest
    assert m["status"] == "complete" and m["weights_hash"] == lm.weights_hash
    assert run.layers == [0, 2] and run.n_neurons == lm.n_neurons and run.window_len == WINDOW
    assert m["tokens"] >= 2500 and m["windows"] > 0 and m["corpus"]["spec"] == "tiny-docs"
    assert m["record"]["top_k"] == 5 and m["package_version"]
    assert (run.path / "tokenizer" / "tokenizer.json").is_file()
    assert not (run.path / "record" / "checkpoint").exists()
    conn = run.db()
    rows = conn.execute("SELECT COUNT(*), MAX(max_act) FROM neurons WHERE layer = 2").fetchone()
    conn.close()
    assert rows[0] == lm.n_neurons
    assert rows[1] == pytest.approx(float(run.stats(2)["max"].max()))


def test_matches_brute_force(run: Run, lm: LoadedModel) -> None:
    wins, acts = all_windows(lm)
    assert len(wins) == run.manifest["windows"]
    for layer in (0, 2):
        a = acts[layer]
        a_valid = a.copy()
        a_valid[:, 0, :] = np.nan  # BOS excluded
        win_max = np.nanmax(a_valid, axis=1)  # [W, N]
        vals = a_valid.reshape(-1, a.shape[-1])
        vals = vals[~np.isnan(vals[:, 0])]
        stats = run.stats(layer)
        np.testing.assert_allclose(stats["max"], vals.max(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats["density"], (vals > 0).mean(0), atol=2e-3)
        assert stats["hist"].sum(1).tolist() == [len(vals)] * lm.n_neurons
        for n in (0, 7, 33):
            tops = run.top_examples((layer, n))
            assert len(tops) == 5
            want = np.argsort(-win_max[:, n], kind="stable")[:5]
            assert [e.window for e in tops] == want.tolist()
            assert len({e.window for e in tops}) == 5  # no two from the same text
            assert [e.max_act for e in tops] == sorted((e.max_act for e in tops), reverse=True)
            assert tops[0].max_act == pytest.approx(run.a_max((layer, n)), rel=1e-6)
            hist = np.bincount(bin_index(vals[:, n]), minlength=N_BINS)
            assert np.abs(stats["hist"][n] - hist).sum() <= 4  # batch rounding may move a few
            rate = run.neuron_stats((layer, n))
            exact = (vals[:, n] >= 0.5 * vals[:, n].max()).mean()
            assert abs(rate["firing_rate"] - exact) <= rate["firing_rate_err"] + 1e-3


def test_planted_top_windows_equal_a_fresh_forward(run: Run, lm: LoadedModel) -> None:
    """The activations stored for the top windows are the neuron's real activations there."""
    for layer, n in ((0, 3), (2, 40)):
        examples = run.top_examples((layer, n))
        for ex in examples:
            fresh = layer_activations(lm, torch.tensor([ex.token_ids]), [layer])[layer][0, :, n]
            assert ex.bos and ex.acts[0] == 0.0 and ex.token_ids[0] == 1
            np.testing.assert_allclose(ex.acts[1:], fresh[1:].numpy(), rtol=1e-4, atol=1e-6)
            assert ex.max_act == pytest.approx(float(fresh[1:].max()), rel=1e-4, abs=1e-7)
            assert ex.tokens == [lm.tokenizer.decode([t]) for t in ex.token_ids]


def test_sample_and_quantiles(run: Run, lm: LoadedModel) -> None:
    sample = run.sample_examples("2:5")
    assert len(sample) == 12 == run.manifest["sample_windows"]
    assert [e.window for e in sample] == sorted(e.window for e in sample)
    assert [e.window for e in run.sample_examples("0:9")] == [e.window for e in sample]
    ex = sample[3]
    fresh = layer_activations(lm, torch.tensor([ex.token_ids]), [2])[2][0, :, 5]
    np.testing.assert_allclose(ex.acts[1:], fresh[1:].numpy(), rtol=2e-3, atol=1e-4)  # fp16
    picks = run.quantile_examples("2:5", n=4)
    maxes = [e.max_act for e in picks]
    assert len(picks) == 4 and maxes == sorted(maxes)
    assert maxes[0] == min(e.max_act for e in sample)
    assert maxes[-1] == max(e.max_act for e in sample)


def test_same_again_is_a_no_op_and_other_config_conflicts(
    run: Run, lm: LoadedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (run.path / "record" / "layer_0.safetensors").stat().st_mtime_ns
    again = record(lm, [], [0, 2], run.path, CONFIG, progress=False, corpus={"spec": "tiny-docs"})
    assert "nothing to do" in capsys.readouterr().err
    assert again.manifest == run.manifest
    assert (run.path / "record" / "layer_0.safetensors").stat().st_mtime_ns == before
    other = RecordConfig(window=WINDOW, top_k=6, sample=12, batch_size=4, max_tokens=2500)
    with pytest.raises(N2GError, match=r"differs in: top_k.*--overwrite"):
        record(lm, [], [0, 2], run.path, other, progress=False, corpus={"spec": "tiny-docs"})


def test_bad_inputs(lm: LoadedModel, tmp_path: Path) -> None:
    windows = list(iter_windows(tiny_documents(5), lm.tokenizer, length=WINDOW))
    with pytest.raises(N2GError, match="layer 3 is out of range"):
        record(lm, windows, [0, 3], tmp_path / "a", CONFIG, progress=False)
    with pytest.raises(N2GError, match="--top-k 0"):
        record(lm, windows, [0], tmp_path / "b", RecordConfig(top_k=0), progress=False)
    with pytest.raises(N2GError, match="no token windows"):
        record(lm, [], [0], tmp_path / "c", CONFIG, progress=False)
    with pytest.raises(N2GError, match="more than --window"):
        record(lm, windows, [0], tmp_path / "d", RecordConfig(window=8), progress=False)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(N2GError, match="not a neuron2graph run"):
        record(lm, windows, [0], tmp_path / "e", CONFIG, progress=False, overwrite=True)
    assert (tmp_path / "e" / "notes.txt").read_text() == "mine"


def test_nan_activations_are_reported_not_stored(tmp_path: Path) -> None:
    lm = tiny_model("llama", n_layers=2, seed=1)
    with torch.no_grad():
        lm.model.model.layers[1].mlp.up_proj.weight[17] = float("nan")
    windows = iter_windows(tiny_documents(5), lm.tokenizer, length=WINDOW)
    with pytest.raises(N2GError, match=r"non-finite activations .*\(1:17\)") as info:
        record(lm, windows, [0, 1], tmp_path / "nan", CONFIG, progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(N2GError, match="has not finished"):
        Run.open(tmp_path / "nan")


def test_reading_needs_no_torch(run: Run) -> None:
    code = (
        "import sys; from neuron2graph.store import Run; r = Run.open(sys.argv[1]); "
        "e = r.top_examples('2:1'); s = r.sample_examples('0:2'); r.neuron_stats('2:1'); "
        "assert e and s and r.pieces([3, 4]) == ['the', 'a'], r.pieces([3, 4]); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_corrupt_and_other_stage_runs(lm: LoadedModel, tmp_path: Path) -> None:
    windows = list(iter_windows(tiny_documents(8), lm.tokenizer, length=WINDOW))
    small = RecordConfig(window=WINDOW, top_k=2, sample=2, batch_size=4, max_tokens=300)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.json").write_text("{oops")
    with pytest.raises(N2GError, match="corrupt: pass --overwrite"):
        record(lm, windows, [0], corrupt, small, progress=False)
    run = record(lm, windows, [0], corrupt, small, progress=False, overwrite=True)
    assert run.layers == [0]

    # A run another stage made without a recording (decode-only) is recorded into in place.
    other = tmp_path / "decoded"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({
        "format": "neuron2graph/run", "format_version": 1, "status": "complete",
        "model": {"spec": lm.spec}, "n_layers": lm.n_layers, "n_neurons": lm.n_neurons,
        "layers": [], "decode": {"layers": [1]}}))
    conn = sqlite3.connect(other / "index.sqlite")
    conn.execute("CREATE TABLE decode (layer INTEGER)")
    conn.execute("INSERT INTO decode VALUES (1)")
    conn.commit()
    conn.close()
    assert Run.open(other).window_len == 0
    run = record(lm, windows, [0], other, small, progress=False)
    assert run.manifest["decode"] == {"layers": [1]} and run.layers == [0]
    db = run.db()
    assert db.execute("SELECT COUNT(*) FROM decode").fetchone()[0] == 1
    db.close()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "run.json").write_text(json.dumps({"format": "someone-else"}))
    for overwrite in (False, True):
        with pytest.raises(N2GError, match="refusing to touch it"):
            record(lm, windows, [0], foreign, small, progress=False, overwrite=overwrite)
