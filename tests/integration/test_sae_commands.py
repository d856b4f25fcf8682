"""Every command on a latent run, through the CLI, on a saved tiny Llama and a planted SAE.

Latent 3 of the coder (resid_post of layer 1) writes the unembedding row of 'cat', so its
decoded write side, the token search, and steering with it must all point at 'cat'. The run is
recorded with `--units sae:PATH` and then built, drawn, predicted, searched, reported, decoded,
served and aligned exactly as a neuron run would be.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from tests.integration.record_fixtures import save_tiny_model, write_corpus
from typer.testing import CliRunner

from neuron2graph.cli import app
from neuron2graph.decode.weights import unembedding
from neuron2graph.sae import HookPoint, Sae, SaeInfo, random_like
from neuron2graph.sae.export import save_saelens
from neuron2graph.testing import tiny_model, token_id
from neuron2graph.web.app import create_app

runner = CliRunner()
LATENT = "1:3"


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.stdout


def _json(args: list[str]) -> Any:
    return json.loads(_ok([*args, "--json"]))


def _planted() -> Sae:
    lm = tiny_model("llama")
    d, n = 32, 16
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(n, d, generator=g) * 0.05
    W_dec[3] = unembedding(lm)[token_id(lm, "cat")].float()
    point = HookPoint(1, "resid_post")
    info = SaeInfo(d_in=d, d_sae=n, d_out=d, architecture="relu", reads=point, writes=point,
                   apply_b_dec_to_input=False)
    W_enc = torch.randn(d, n, generator=g)  # about half the latents fire on any token
    return Sae(info, W_enc, torch.zeros(n), W_dec, torch.zeros(d))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sae-cmds")
    model = save_tiny_model(root / "model")
    corpus = write_corpus(root / "c.txt", n=30)
    sae = _planted()
    save_saelens(sae, root / "sae")
    save_saelens(random_like(sae, seed=3), root / "random")
    paths = {"model": model, "sae": root / "sae", "random": root / "random", "root": root}
    for name in ("sae", "random"):
        _ok(["record", "--model", str(model), "--units", f"sae:{root / name}", "--layers", "1",
             "--corpus", str(corpus), "--window", "16", "--max-tokens", "400", "--top-k", "6",
             "--out", str(root / f"run-{name}"), "--device", "cpu", "--no-progress"])
        paths[f"run-{name}"] = root / f"run-{name}"
    _ok(["record", "--model", str(model), "--layers", "1", "--corpus", str(corpus), "--window",
         "16", "--max-tokens", "400", "--top-k", "6", "--out", str(root / "run-neurons"),
         "--device", "cpu", "--no-progress"])
    paths["run-neurons"] = root / "run-neurons"
    _ok(["build", str(paths["run-sae"]), "--neurons", LATENT, "--no-augment", "--device", "cpu",
         "-q"])
    return paths


def test_build_show_predict_search_report(env: dict[str, Path]) -> None:
    run = str(env["run-sae"])
    assert "digraph" in _ok(["show", run, "--neuron", LATENT, "--format", "dot"])
    rows = _json(["predict", run, "--neuron", LATENT, "--text", "the cat sat", "--device", "cpu"])
    assert rows and all("actual" in r and "predicted" in r for r in rows)
    found = _json(["search", run, "--min-components", "1", "--no-progress"])
    assert (1, 3) in [(r["layer"], r["neuron"]) for r in found["results"]]
    index = Path(_json(["report", run, "--html", str(env["root"] / "site")])["index"])
    page = (index.parent / "neurons" / "1_3.html").read_text(encoding="utf-8")
    assert "Latent 1:3" in page and "sae/1:3" in page


def test_decode_find_and_steer_a_latent(env: dict[str, Path]) -> None:
    model, units = str(env["model"]), f"sae:{env['sae']}"
    doc = _json(["decode", "--model", model, "--units", units, "--neurons", LATENT, "--top", "3",
                 "--device", "cpu"])
    assert doc["units"] == units and doc["results"][0]["promote"][0]["token"] == "cat"
    hits = _json(["find-neurons", "--model", model, "--units", units, "--token", "cat",
                  "--top", "2", "--device", "cpu"])["neurons"]
    assert hits[0]["id"] == "sae/1:3"
    rep = _json(["clamp", "--model", model, "--units", units, "--neuron", LATENT, "--value", "20",
                 "--concept", "cat", "--prompt", "the dog", "--max-new-tokens", "2",
                 "--device", "cpu"])
    assert rep["unit"] == "sae/1:3"
    shift = rep["concepts"][0]
    assert shift["p_clamped"] > 1.5 * shift["p_base"]
    res = runner.invoke(app, ["decode", "--model", model, "--units", units, "--layers", "0",
                              "--device", "cpu"])
    assert res.exit_code == 2 and "layer 0 is out of range" in res.output


def test_decode_stage_on_a_latent_run_and_the_browser(env: dict[str, Path]) -> None:
    run = env["run-sae"]
    _ok(["decode", "--model", str(env["model"]), "--out", str(run), "--top", "3",
         "--device", "cpu"])
    with TestClient(create_app(run)) as client:
        data = client.get(f"/api/neurons/{LATENT}").json()
        assert data["unit"] == {"noun": "latent", "qualified": "sae/1:3",
                                "source": f"sae:{env['sae']}"}
        assert data["decode"]["promote"][0]["token"] == "cat"
        assert client.get("/api/neurons/1:16").status_code == 404  # 16 latents: 0..15
    res = runner.invoke(app, ["decode", "--model", str(env["model"]), "--out", str(run),
                              "--units", f"sae:{env['random']}", "--device", "cpu"])
    assert res.exit_code == 2 and "holds the units" in res.output


def test_align_two_runs_links_latents_in_the_browser(env: dict[str, Path]) -> None:
    a, b = env["run-sae"], env["run-random"]
    doc = _json(["align", str(a), str(b)])
    assert doc["summary"]["pairs"] == 16 and len(doc["written"]) == 2
    stored = json.loads((a / "align" / "run-random-L1.json").read_text(encoding="utf-8"))
    back = json.loads((b / "align" / "run-sae-L1.json").read_text(encoding="utf-8"))
    match = next(p for p in stored["pairs"] if p["unit"] == 3)
    assert {"unit": match["match"], "match": 3, "cosine": match["cosine"]} in back["pairs"]
    self_doc = _json(["align", str(a), str(a)])  # a coder against itself: the identity
    assert self_doc["summary"]["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    with TestClient(create_app(a)) as client:
        matches = client.get(f"/api/neurons/{LATENT}").json()["matches"]
        by_run = {m["run"]: m for m in matches}
        assert by_run["run-random"]["qualified"] == f"sae/1:{match['match']}"
        assert by_run["run-random"]["cosine"] == pytest.approx(match["cosine"])
        assert by_run["run-random"]["example"] is not None  # read from the other run
        assert by_run["run-sae"]["id"] == LATENT and by_run["run-sae"]["link"] is True
        html = client.get(f"/neurons/{LATENT}").text
        assert "Aligned latents" in html and f'href="/neurons/{LATENT}"' in html
        assert f"sae/1:{match['match']}" in html
    res = runner.invoke(app, ["align", str(a), str(env["sae"])])
    assert res.exit_code == 2 and "not one of each" in res.output


@pytest.mark.browser
def test_static_latent_page_links_to_its_match_in_chromium(env: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """The static report of an aligned latent run: the match link opens the partner's page."""
    from playwright.sync_api import sync_playwright
    from tests.system_tools import require_tool

    chromium = "/usr/bin/chromium"
    require_tool(chromium, "install Debian chromium (make sysdeps)")
    run = env["run-sae"]
    _ok(["align", str(run), str(run)])  # the coder against itself: latent 3 <-> latent 3
    index = Path(_json(["report", str(run), "--html", str(tmp_path / "site")])["index"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((index.parent / "neurons" / "1_3.html").as_uri())
        assert "Aligned latents" in page.inner_text("#matches")
        page.click("#matches a:text('sae/1:3')")
        page.wait_for_selector("#graph svg g.node")
        assert page.url.endswith("/neurons/1_3.html") and "Latent 1:3" in page.inner_text("h1")
        assert not errors, errors
        browser.close()


def test_compare_neurons_latents_and_random_latents(env: dict[str, Path], tmp_path: Path) -> None:
    """`n2g eval` on the three runs (same protocol), then one table with site-prefixed ids."""
    runs = [env["run-neurons"], env["run-sae"], env["run-random"]]
    for run in runs:
        _ok(["eval", str(run), "--per-layer", "2", "--top-k", "6", "--n-train", "3",
             "--no-official", "--augmenter", "none", "--device", "cpu", "-q"])
    doc = _json(["compare", *map(str, runs), "--layer", "1", "--label", "neurons",
                 "--label", "latents", "--label", "random"])
    rows = {r["label"]: r for r in doc["runs"]}
    assert [r["site"] for r in doc["runs"]] == ["mlp", "sae", "sae"]
    assert all(r["n_units"] == 2 and len(r["ids"]) == 2 for r in doc["runs"])
    assert rows["neurons"]["ids"][0].startswith("mlp/1:")
    assert rows["latents"]["ids"][0].startswith("sae/1:")
    for r in doc["runs"]:  # the share is recomputed from each run's own per-unit rows
        results = json.loads((Path(r["run"]) / "eval" / "results.json").read_text())
        pairs = [(u["methods"]["n2g"]["f1_firing"], u["methods"]["token"]["f1_firing"])
                 for u in results["neurons"]]
        both = [(g, t) for g, t in pairs if g is not None and t is not None]
        assert r["token_as_good"]["n"] == len(both)
        assert r["token_as_good"]["count"] == sum(t >= g for g, t in both)
    text = _ok(["compare", *map(str, runs), "--out", str(tmp_path / "t.md")])
    assert f"| run-random | sae (sae:{env['random']}) | 2 |" in text and "token >= N2G" in text
    assert "| run-neurons | mlp (neurons) | 2 |" in text
    assert (tmp_path / "t.md").read_text() == text.split("table: ")[0]
    other = tmp_path / "other-split"  # the same run as if evaluated with another split
    shutil.copytree(env["run-random"], other)
    results = json.loads((other / "eval" / "results.json").read_text())
    results["config"]["n_train"] = 2
    (other / "eval" / "results.json").write_text(json.dumps(results))
    res = runner.invoke(app, ["compare", str(runs[0]), str(other)])
    assert res.exit_code == 2 and "n_train differ: n_train=2 vs 3" in res.output


def test_intervention_steers_the_latent(env: dict[str, Path]) -> None:
    """The intervention scorer steers a latent through the run's unit source (adds
    value x W_dec[3], the unembedding row of 'cat'): an explanation naming `cat` tops it."""
    from neuron2graph.explain.examples import ExampleConfig
    from neuron2graph.explain.pipeline import Graphs, load_examples
    from neuron2graph.explain.scorers.intervention import InterventionScorer
    from neuron2graph.ids import NeuronId
    from neuron2graph.store.run import Run

    run = Run.open(env["run-sae"])
    opts = ["--ctx-len", "8", "--n-train", "3", "--n-test", "3", "--n-negative", "4",
            "--n-hard", "2"]
    cfg = ExampleConfig(ctx_len=8, n_train=3, n_test=3, n_negative=4, n_hard=2)
    lm, source = Graphs(run, device="cpu").loaded()
    assert source.site != "mlp"  # the SAE's latents, not the model's neurons
    ex = load_examples(run, NeuronId(1, 3), cfg, save=False)
    scorer = InterventionScorer(lm, source, strength=4.0)
    cat = scorer.score(ex, "`cat`")
    assert cat["auroc"] > 0.95 and cat["shift"] > 0 and cat["failed"] == 0
    assert "cat" in cat["promoted"][0]
    _json(["explain", str(run.path), "--neurons", LATENT, "--explainer", "tokens", *opts, "-q"])
    doc = _json(["score", str(run.path), "--neurons", LATENT, "--scorers", "intervention",
                 "--judge", "none", "--no-graph", *opts, "-q"])
    assert doc["computed"] == 1 and doc["failed_calls"] == {}
    row = json.loads((run.path / "explain" / "scores" / "1_3.json").read_text())
    entry = row["methods"]["sentence:tokens"]["intervention"]
    assert entry["n"] > 0 and entry["kl"] > 0 and entry["value"] > 0
