"""A run's front page (browser index and static report): stages, units per layer, evaluation
table and plot, best and worst units, before the unit list. Planted tiny Llama, built and
evaluated through the CLI."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, save_planted
from test_web_app import browser  # noqa: F401  (the shared headless Chromium fixture)

from neuron2graph.cli import app as cli
from neuron2graph.testing import WORDS
from neuron2graph.web.app import create_app

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("front")
    model_dir = save_planted(root)
    rng = random.Random(2)
    filler = [w for w in WORDS if w not in (A, B, C)]
    words: list[str] = []
    for _ in range(160):
        chunk = [rng.choice(filler) for _ in range(8)]
        if rng.random() < 0.4:
            chunk[rng.randrange(8)] = C
        else:
            i = rng.randrange(4, 8)
            chunk[i], chunk[i - 1] = B, A
        words += chunk
    corpus = root / "corpus.txt"
    corpus.write_text(" ".join(words) + "\n", encoding="utf-8")
    out = root / "run"
    res = runner.invoke(cli, [
        "record", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
        "--layers", str(LAYER), "--window", "16", "--sample", "8", "--max-tokens", "0",
        "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["build", str(out), "--neurons", f"{LAYER}:{SINGLE},{LAYER}:{PAIR}",
                              "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["eval", str(out), "--layers", str(LAYER), "--per-layer", "2",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return out


def test_front_page_shows_the_run_before_the_list(run_dir: Path) -> None:
    client = TestClient(create_app(run_dir), raise_server_exceptions=False)
    html = client.get("/").text
    assert html.index('id="overview"') < html.index('id="neurons"')
    stages = html[html.index('id="stages"'):html.index('id="layers"')]
    assert "<td>build</td><td>complete</td><td>2</td>" in stages
    assert f"<td>{LAYER}</td><td>8</td><td>2</td><td>2</td><td>2</td>" in html  # units/alive/..
    assert 'id="eval-table"' in html and "N2G" in html
    assert 'id="extremes"' in html and f"/neurons/{LAYER}:" in html
    plot = client.get("/eval/f1_by_layer.png")
    assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"


def test_front_page_without_evaluation(tmp_path: Path, run_dir: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    shutil.rmtree(bare / "eval")
    (bare / "stages" / "eval.json").unlink(missing_ok=True)
    conn = __import__("sqlite3").connect(bare / "index.sqlite")
    with conn:
        conn.execute("DROP TABLE IF EXISTS eval")
    conn.close()
    client = TestClient(create_app(bare), raise_server_exceptions=False)
    html = client.get("/").text
    assert 'id="no-eval"' in html and 'id="eval-table"' not in html
    assert client.get("/eval/f1_by_layer.png").status_code == 404


@pytest.mark.browser
def test_static_front_page_in_chromium(run_dir: Path, tmp_path: Path,
                                       browser: object) -> None:  # noqa: F811
    res = runner.invoke(cli, ["report", str(run_dir), "--html", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((tmp_path / "site/index.html").as_uri())
    assert page.is_visible("#overview #stages")
    assert page.evaluate("document.querySelector('#eval-plot').naturalWidth") > 0
    top = page.evaluate("document.querySelector('#overview').getBoundingClientRect().top")
    listing = page.evaluate("document.querySelector('#neurons').getBoundingClientRect().top")
    assert top < listing
    page.click("#extremes a >> nth=0")
    page.wait_for_selector("#graph svg g.node")
    assert not errors, errors
