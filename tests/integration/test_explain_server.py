"""The real OpenAI-compatible server (`n2g llm-serve`) on loopback, with the openai explainer.

The server runs as a subprocess serving a tiny random Llama; its log-probs are checked against
transformers, then an explain run with concurrent requests loses the server mid-run: it must stop
with one line, keep what finished, refuse cleanly while the server is down, and resume.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from record_fixtures import save_tiny_model, write_corpus

SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OPENAI_API_KEY": "test", "HF_HUB_OFFLINE": "1"}
N_UNITS = 24


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _n2g(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "neuron2graph", *args], env=ENV,
                          capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]


def start_server(model: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuron2graph", "llm-serve", "--model", str(model), "--port",
         str(port), "--name", "tiny"], env=ENV, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0,
                    timeout=5)
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            client.models.list()
            return proc
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 90 s")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("llmserve")
    model = save_tiny_model(root / "model")
    corpus = write_corpus(root / "corpus.txt", n=60)
    run = root / "run"
    res = _n2g("record", "--model", str(model), "--corpus", str(corpus), "--out", str(run),
               "--layers", "0", "--window", "16", "--sample", "48", "--max-tokens", "0",
               "--no-progress", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    yield run, model


def test_logprobs_match_transformers(setup: tuple[Path, Path]) -> None:
    import torch
    from openai import OpenAI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, model_dir = setup
    port = _port()
    proc = start_server(model_dir, port)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        assert [m.id for m in client.models.list().data] == ["tiny"]
        text = "the cat sat on the mat except a dog"
        res = client.completions.create(model="tiny", prompt=text, max_tokens=0, echo=True,
                                        logprobs=2)
        lp = res.choices[0].logprobs
        assert lp is not None and lp.token_logprobs is not None
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        ids = tok.encode(text)
        with torch.no_grad():
            ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        want = [float(ref[i - 1, ids[i]]) for i in range(1, len(ids))]
        assert lp.token_logprobs[0] is None and len(lp.token_logprobs) == len(ids)
        assert lp.token_logprobs[1:] == pytest.approx(want, abs=1e-4)  # aligned, not shifted

        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "the cat"}], max_tokens=4,
            logprobs=True, top_logprobs=3)
        content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
        assert content is not None and 1 <= len(content) <= 4
        for entry in content:  # greedy: the chosen token is the best alternative
            assert len(entry.top_logprobs) == 3
            assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob, abs=1e-5)
    finally:
        proc.kill()
        proc.wait()


def test_explain_survives_a_killed_server(setup: tuple[Path, Path]) -> None:
    run, model_dir = setup
    port = _port()
    url = f"http://127.0.0.1:{port}/v1"
    args = ["explain", str(run), "--explainer", "openai", "--model", "tiny", "--base-url", url,
            "--layers", "0", "--per-layer", str(N_UNITS), "--concurrency", "4", "--timeout",
            "20", "--json", "--quiet"]
    out_dir = run / "explain" / "explanations" / "openai"
    server = start_server(model_dir, port)
    cli = subprocess.Popen([sys.executable, "-m", "neuron2graph", *args], env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(out_dir.glob("*.json"))) < 4:
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)
        server.wait()
        _, err = cli.communicate(timeout=120)
    finally:
        server.kill()
        cli.kill()
    saved = len(list(out_dir.glob("*.json")))
    assert cli.returncode == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: the endpoint stopped answering"), err
    assert 4 <= saved < N_UNITS and f"{saved} units explained and saved" in lines[0]

    down = _n2g(*args)  # server still down: one line, nothing lost
    assert down.returncode == 2 and "0 units explained" in down.stderr
    assert len(list(out_dir.glob("*.json"))) == saved

    server = start_server(model_dir, port)
    try:
        again = _n2g(*args)
    finally:
        server.kill()
        server.wait()
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["reused"] == saved and doc["explained"] == N_UNITS - saved
    assert sum(doc["status"].values()) == N_UNITS - saved
