"""The browser over a real tiny run (planted tiny Llama, recorded and built through the CLI):
the JSON API via TestClient, path traversal, concurrency, the static report, and the pages in
real headless Chromium (system browser through Playwright, marked `browser`)."""

from __future__ import annotations

import json
import random
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from system_tools import require_tool

sys.path.insert(0, str(Path(__file__).parent))
from n2g_planted import LAYER, PAIR, SINGLE, A, B, C, save_planted

from neuron2graph.cli import app as cli
from neuron2graph.testing import WORDS
from neuron2graph.web.app import create_app

runner = CliRunner()
NID = f"{LAYER}:{SINGLE}"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web")
    model_dir = save_planted(root)
    rng = random.Random(1)
    filler = [w for w in WORDS if w not in (A, B, C)]
    words: list[str] = []
    for _ in range(120):
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
    res = runner.invoke(cli, ["build", str(out), "--neurons", f"{NID},{LAYER}:{PAIR}",
                              "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def client(run_dir: Path) -> TestClient:
    return TestClient(create_app(run_dir), raise_server_exceptions=False)


def test_api_run_and_listing(client: TestClient) -> None:
    info = client.get("/api/run").json()
    assert info["layers"] == [LAYER] and info["n_graphs"] == 2
    data = client.get("/api/neurons", params={"graphs": True, "sort": "n_nodes"}).json()
    assert data["total"] == 2 and {r["id"] for r in data["rows"]} == {NID, f"{LAYER}:{PAIR}"}
    page = client.get("/api/neurons", params={"limit": 3, "offset": 2, "sort": "id",
                                              "desc": False}).json()
    assert [r["neuron"] for r in page["rows"]] == [2, 3, 4]
    assert client.get("/api/neurons", params={"sort": "bogus"}).status_code == 400
    assert "/api/neurons/{nid}/predict" in client.get("/openapi.json").json()["paths"]


def test_api_neuron_graph_and_predict(client: TestClient) -> None:
    n = client.get(f"/api/neurons/{NID}").json()
    assert n["has_graph"] and n["examples"] and n["examples"][0]["pred"] is not None
    g = client.get(f"/api/neurons/{NID}/graph").json()
    assert g["schema"] == "neuron2graph/graph" and g["neuron"] == NID
    svg = client.get(f"/api/neurons/{NID}/graph.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and "<svg" in svg.text, svg.text
    pred = client.post(f"/api/neurons/{NID}/predict", json={"text": f"the {C} sat"}).json()
    assert pred["tokens"] == ["the", C, "sat"] and pred["pred"][1] > 0 and pred["pred"][0] == 0


@pytest.mark.parametrize("url", [
    "/api/neurons/..%2f..%2fetc/passwd", "/api/neurons/../../run.json",
    "/static/../../run.json", "/static/%2e%2e/%2e%2e/run.json", "/static/..%2f..%2frun.json",
    "/neurons/..%2frun.json", "/api/neurons/99:0", "/api/neurons/0:999999", "/api/neurons/x",
    "/api/neurons/0:-1/graph", "/neurons/7:7"])
def test_traversal_and_bad_ids_are_4xx_json(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code)
    assert "Traceback" not in r.text and "detail" in r.json()


def test_concurrent_requests(client: TestClient) -> None:
    urls = [f"/api/neurons/{NID}", "/api/neurons?limit=20", f"/neurons/{NID}",
            f"/api/neurons/{NID}/graph.svg"] * 13
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda u: client.get(u).status_code, urls))
    assert codes == [200] * len(urls)


def test_show_and_report_cli(run_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(cli, ["show", str(run_dir), "--neuron", NID, "--format", "dot"])
    assert res.exit_code == 0 and "digraph" in res.stdout
    res = runner.invoke(cli, ["show", str(run_dir), "--neuron", "9:9"])
    assert res.exit_code == 2 and "not in this run" in res.output
    res = runner.invoke(cli, ["report", str(run_dir), "--html", str(tmp_path / "site"), "--json"])
    assert res.exit_code == 0, res.output
    index = Path(json.loads(res.stdout)["index"])
    assert index.is_file() and (tmp_path / "site/neurons" / f"{LAYER}_{SINGLE}.html").is_file()


# ------------------------------------------------------------------- real headless Chromium
@pytest.fixture(scope="module")
def server(run_dir: Path) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(run_dir), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_tool(CHROMIUM, "install Debian chromium (make sysdeps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.mark.browser
def test_pages_in_chromium(server: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector(f"#neurons a:text('{NID}')")
    page.click(f"#neurons a:text('{NID}')")
    page.wait_for_selector("#graph svg g.node")
    assert page.locator("#graph g.n2g-activating").count() >= 1
    assert not errors, errors
    assert page.locator("#examples .real-tok").count() > 0
    styles = page.eval_on_selector_all(
        "#examples .real-tok", "els => els.map(e => e.style.background)")
    assert any("rgba(220, 30, 30" in s for s in styles)  # some token is coloured red
    page.hover("#graph g.n2g-activating")
    assert page.is_visible("#tip") and "activating" in page.inner_text("#tip")
    assert page.locator("#hist-svg rect").count() > 0
    page.click("#graph g.n2g-activating")
    assert page.locator("#examples .example.hl-ex").count() >= 1
    page.fill("#try-text", f"the {C} sat")
    page.click("#try-go")
    page.wait_for_selector("#try-out .pred-tok")
    assert page.locator("#try-out .pred-tok").count() == 3
    assert not errors, errors


@pytest.mark.browser
def test_static_report_from_file(run_dir: Path, tmp_path: Path, browser: object) -> None:
    res = runner.invoke(cli, ["report", str(run_dir), "--html", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((tmp_path / "site/index.html").as_uri())
    page.click(f"#neurons a:text('{NID}')")
    page.wait_for_selector("#graph svg g.node")
    assert page.locator("#examples .real-tok").count() > 0
    page.fill("#try-text", f"the {C} sat")
    page.click("#try-go")
    page.wait_for_selector("#try-out .pred-tok")
    assert page.locator("#try-out .pred-tok").count() == 3
    assert not errors, errors
    assert shutil.which("dot")


def test_search_and_similar(client: TestClient) -> None:
    hits = client.get("/api/search", params={"activating": C}).json()
    assert NID in [h["id"] for h in hits]
    assert client.get(f"/api/neurons/{NID}/similar").status_code == 200
    assert client.get("/api/neurons/0:x/similar").status_code == 404
    assert client.get(f"/api/neurons/{NID}/similar", params={"top": 0}).status_code == 400
