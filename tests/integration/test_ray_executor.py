"""RayExecutor on a real local Ray cluster: a killed worker loses nothing, a killed driver resumes.

Ray runs in its own network namespace (`unshare -n`, loopback only): outside one, Ray probes a
public address to find its IP and listens on every interface. The body is ray_fault_body.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from ray_fault_body import EVAL_ARGS
from record_fixtures import save_tiny_model, write_corpus

from neuron2graph.cli import app
from neuron2graph.n2g.graph_io import load_graph
from neuron2graph.n2g.stage import BuildStageConfig, run
from neuron2graph.store import layout
from system_tools import require_tool

BODY = Path(__file__).with_name("ray_fault_body.py")


def _plain(obj: Any) -> Any:
    """A result's JSON without timings (`seconds`, keys ending `_s`), floats to 6 decimals: Ray
    gives each actor OMP_NUM_THREADS=its CPUs, so sums run in another order than in a
    multi-threaded process."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()
                if "seconds" not in k and not k.endswith("_s")}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return round(obj, 6) if isinstance(obj, float) else obj


def _graphs(run_dir: Path) -> dict[str, Any]:
    return {p.name: _plain(json.loads(p.read_text()))
            for p in sorted(layout.graphs_dir(run_dir).glob("*/*.json"))}


def _eval_files(run_dir: Path) -> dict[str, Any]:
    """Every JSON result `n2g eval` wrote (per-unit rows, graphs, results.json), timings aside
    and, in results.json, the run's path and the time it was written."""
    folder = run_dir / "eval"
    files = {str(p.relative_to(folder)): _plain(json.loads(p.read_text()))
             for p in sorted(folder.rglob("*.json"))}
    for key in ("run", "created"):
        files["results.json"].pop(key)
    return files


def test_ray_worker_and_driver_killed(tmp_path: Path) -> None:
    require_tool("unshare", "util-linux")
    if os.geteuid() != 0:
        pytest.skip("unshare -n needs root (CI runs as root)")
    model = save_tiny_model(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    base = tmp_path / "base"
    res = CliRunner().invoke(app, [
        "record", "--model", str(model), "--corpus", str(corpus), "--out", str(base),
        "--layers", "1", "--window", "16", "--sample", "8", "--max-tokens", "0",
        "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    runs = {name: tmp_path / name for name in ("local", "w", "d", "e")}
    for path in runs.values():
        shutil.copytree(base, path)
    local = run(BuildStageConfig(layer=1, sample=8, batch_neurons=1, augmenter=None,
                                 device="cpu"),
                runs["local"], progress=False)
    assert local.computed == 8
    res = CliRunner().invoke(app, ["eval", str(runs["local"]), *EVAL_ARGS])
    assert res.exit_code == 0, res.output
    temp = Path("/tmp") / f"r{os.getpid()}"  # short: Ray's AF_UNIX socket paths must fit
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    script = (f"ip link set lo up && exec {sys.executable} {BODY} {runs['w']} {runs['d']} "
              f"{temp} {runs['e']}")
    try:
        proc = subprocess.run(["unshare", "-n", "bash", "-c", script], env=env,
                              capture_output=True, text=True, timeout=240)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["node_ip"] == "127.0.0.1" and out["address"].startswith("127.0.0.1:")
    kill = out["worker_kill"]
    assert kill["killed"]["pid"] > 0, kill  # an actor busy with an item was SIGKILLed
    assert (kill["computed"], kill["failed"], kill["pending"]) == (8, [], 0), kill
    drv = out["driver_kill"]
    assert drv["rc"] != 0 and 2 <= drv["done_at_kill"] < 8, drv  # killed mid-run
    assert drv["rc2"] == 0 and drv["skipped"] >= drv["done_at_kill"], drv  # resumed
    assert drv["skipped"] + drv["built"] == 8
    expected = _graphs(runs["local"])
    assert len(expected) == 8
    assert _graphs(runs["w"]) == expected
    assert _graphs(runs["d"]) == expected
    nid = next(iter(local.rows))
    assert load_graph(runs["w"], nid) is not None
    manifest = json.loads((runs["w"] / "stages" / "build.json").read_text())
    assert manifest["status"] == "complete" and manifest["n_done"] == 8
    assert out["eval"]["rc"] == 0, out["eval"]["stderr"]  # n2g eval --executor ray
    expected_eval = _eval_files(runs["local"])
    assert sum(k.startswith("neurons/") for k in expected_eval) >= 2, sorted(expected_eval)
    assert _eval_files(runs["e"]) == expected_eval
    manifest = json.loads((runs["e"] / "stages" / "eval.json").read_text())
    assert manifest["status"] == "complete"
