"""Kill `n2g record` for real (SIGKILL mid-run), re-run it, and get bit-identical arrays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from record_fixtures import save_tiny_model, write_corpus
from safetensors.numpy import load_file

from neuron2graph.store import Run

# Runs the real CLI, with `record`'s `on_batch` callback set to SIGKILL the process after
# `stop_after` batches of this invocation (a crash mid-run, at a batch boundary we choose).
KILLER = """
import functools, os, signal, sys
import neuron2graph.record.recorder as rec  # the record stage looks `record` up here

def kill_after(n, progress):
    if progress["run_batches"] >= n:
        os.kill(os.getpid(), signal.SIGKILL)

stop_after = int(sys.argv.pop(1))
if stop_after:
    original = rec.record
    rec.record = functools.partial(original, on_batch=functools.partial(kill_after, stop_after))
from neuron2graph.cli import main
sys.argv[0] = "n2g"
main()
"""


def n2g(args: list[str], stop_after: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", KILLER, str(stop_after or 0), *args],
                          capture_output=True, text=True, env=dict(os.environ), timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    base = tmp_path_factory.mktemp("resume")
    model = save_tiny_model(base / "model")
    corpus = write_corpus(base / "corpus.txt", n=60)
    args = ["record", "--model", str(model), "--corpus", str(corpus), "--layers", "0,1",
            "--window", "16", "--top-k", "5", "--sample", "10", "--batch-size", "4",
            "--max-tokens", "3000", "--checkpoint-every", "5", "--no-progress"]
    return base, args


def arrays(run: Path) -> dict[str, np.ndarray]:
    out = {}
    for file in sorted((run / "record").glob("*.safetensors")):
        for name, value in load_file(str(file)).items():
            out[f"{file.name}/{name}"] = value
    return out


def test_killed_run_resumes_to_identical_results(setup: tuple[Path, list[str]]) -> None:
    base, args = setup
    whole = n2g([*args, "--out", str(base / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = str(base / "killed")
    first = n2g([*args, "--out", out], stop_after=12)  # checkpoints at 5 and 10, killed at 12
    assert first.returncode == -9, first.stderr[-2000:]
    assert (base / "killed" / "record" / "checkpoint" / "progress.json").is_file()
    opened = n2g(["info", out])
    assert opened.returncode == 2 and "has not finished" in opened.stderr
    second = n2g([*args, "--out", out], stop_after=23)  # resumes at 10, killed after 33
    assert second.returncode == -9, second.stderr[-2000:]
    assert "resuming" in second.stderr and "40 windows" in second.stderr
    third = n2g([*args, "--out", out])
    assert third.returncode == 0, third.stderr[-2000:]
    assert "resuming" in third.stderr and "120 windows" in third.stderr

    a, b = arrays(base / "whole"), arrays(base / "killed")
    assert sorted(a) == sorted(b) and len(a) > 20
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    ra, rb = Run.open(base / "whole"), Run.open(base / "killed")
    assert ra.manifest["tokens"] == rb.manifest["tokens"]
    assert ra.manifest["windows"] == rb.manifest["windows"]
    assert not (base / "killed" / "record" / "checkpoint").exists()

    again = n2g([*args, "--out", out])
    assert again.returncode == 0 and "nothing to do" in again.stderr
    other = n2g([*args[:-1], "--top-k", "6", "--no-progress", "--out", out])
    assert other.returncode == 2
    assert other.stderr.strip().count("\n") == 0 and "--overwrite" in other.stderr
