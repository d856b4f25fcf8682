"""Training a tiny SAE with sparsify on a tiny random model: checkpoint, report, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from neuron2graph.corpus import Window
from neuron2graph.errors import N2GError
from neuron2graph.sae import load_saes
from neuron2graph.sae.train import REPORT, TrainSpec, train_sae
from neuron2graph.testing import tiny_model


def _windows(n: int, length: int = 16, seed: int = 0) -> list[Window]:
    import random

    rng = random.Random(seed)
    return [Window(i, "doc", 0, (1, *(rng.randrange(3, 60) for _ in range(length - 1))))
            for i in range(n)]


@pytest.mark.parametrize("site", ["mlp_out", "transcoder", "resid_post"])
def test_train_writes_a_loadable_checkpoint_and_report(tmp_path: Path, site: str) -> None:
    lm = tiny_model("llama")
    # The tiny model's activations are ~1e-3: sparsify's automatic learning rate diverges there.
    spec = TrainSpec(layer=0, site=site, expansion=2, k=4, tokens=16 * 40, window=16,
                     batch_size=4, eval_windows=4, save_every=4, lr=1e-3)
    windows = _windows(60)
    report = train_sae(lm, windows, tmp_path / "ckpt", spec, model_spec="tiny-llama",
                       corpus="synthetic", progress=False)
    assert report["status"] == "complete" and report["steps"] == 10
    assert report["hookpoint"] == ("layers.0" if site == "resid_post" else "layers.0.mlp")
    assert 0 <= report["dead_share"] <= 1
    if site != "transcoder":  # 10 steps do not teach a transcoder; its FVU is still checked below
        assert report["fvu"] < 0.95  # learned something beyond predicting the mean
    # Our held-out FVU is sparsify's own on the same (held-out) tokens.
    from sparsify import SparseCoder

    from neuron2graph.sae.sites import site_activations

    [sae] = load_saes(tmp_path / "ckpt")
    theirs = SparseCoder.load_from_disk(tmp_path / "ckpt" / report["hookpoint"])
    ids = torch.tensor([list(w.token_ids) for w in windows[40:44]])
    acts = site_activations(lm, ids, [sae.info.reads, sae.info.writes])
    x, y = (acts[p].flatten(0, 1) for p in (sae.info.reads, sae.info.writes))
    with torch.no_grad():
        expected = float(theirs(x, y if sae.info.transcoder else None).fvu)
    assert report["fvu"] == pytest.approx(expected, rel=1e-4)
    assert report["tokens_per_s"] > 0 and report["eval_tokens"] == 4 * 16
    assert sae.info.d_sae == 64 and sae.info.k == 4
    assert sae.info.transcoder == (site == "transcoder")
    assert sae.info.model_name == "tiny-llama"
    assert json.loads((tmp_path / "ckpt" / REPORT).read_text())["latents"] == 64


def test_resume_continues_and_settings_conflict(tmp_path: Path) -> None:
    lm = tiny_model("llama")
    spec = TrainSpec(layer=1, expansion=2, k=4, tokens=16 * 16, window=16, batch_size=4,
                     eval_windows=4, save_every=2)
    kw: dict[str, Any] = dict(model_spec="tiny-llama", corpus="synthetic", progress=False)
    first = train_sae(lm, _windows(40), tmp_path / "ckpt", spec, **kw)
    # Pretend the run stopped after step 2: sparsify resumes from the step its state.pt names.
    import torch as t

    t.save({"global_step": 2}, tmp_path / "ckpt" / "state.pt")
    again = train_sae(lm, _windows(40), tmp_path / "ckpt", spec, **kw)
    assert again["resumed_at_step"] == 2  # sparsify continued from its own state.pt
    assert again["steps"] == first["steps"] == 4 and again["tokens_per_s"] > 0
    done = train_sae(lm, _windows(40), tmp_path / "ckpt", spec, **kw)
    assert done["resumed_at_step"] == 4 and done["tokens_per_s"] is None  # nothing left to do
    other = TrainSpec(layer=1, expansion=4, k=4, tokens=16 * 16, window=16, batch_size=4,
                      eval_windows=4)
    with pytest.raises(N2GError, match=r"differs in: expansion, save_every"):
        train_sae(lm, _windows(40), tmp_path / "ckpt", other, **kw)
    with pytest.raises(N2GError, match="only 10 full windows"):
        train_sae(lm, _windows(10), tmp_path / "new", spec, **kw)


def test_cli_train_then_record_latents(tmp_path: Path) -> None:
    """The commands end to end on a saved tiny model: --json stdout is one JSON document."""
    import subprocess
    import sys

    from tests.integration.record_fixtures import save_tiny_model, write_corpus

    model = save_tiny_model(tmp_path / "model")
    corpus = write_corpus(tmp_path / "c.txt", n=80)
    base = [sys.executable, "-m", "neuron2graph"]
    res = subprocess.run(
        [*base, "train-sae", str(model), "--out", str(tmp_path / "ck"), "--layers", "1",
         "--site", "resid_post", "--expansion", "2", "--k", "4", "--tokens", "512",
         "--corpus", str(corpus), "--window", "16", "--batch-size", "4", "--lr", "1e-3",
         "--device", "cpu", "--no-progress", "--json"],
        capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.lstrip().startswith("{"), res.stdout[:300]
    report = json.loads(res.stdout)
    assert report["hookpoint"] == "layers.1" and report["steps"] == 8
    res = subprocess.run(
        [*base, "record", "--model", str(model), "--units", f"sae:{tmp_path / 'ck'}",
         "--layers", "1", "--corpus", str(corpus), "--window", "16", "--max-tokens", "400",
         "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress", "--json"],
        capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["n_neurons"] == 64 and info["units"] == f"sae:{tmp_path / 'ck'}"
    res = subprocess.run(
        [*base, "record", "--model", str(model), "--units", f"sae:{tmp_path / 'ck'}",
         "--layers", "0", "--corpus", str(corpus), "--out", str(tmp_path / "run0"),
         "--device", "cpu"], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith(
        "error: layer 0 is out of range")
