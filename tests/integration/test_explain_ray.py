"""`n2g explain` and `n2g score` with `--executor ray` on a real local Ray cluster give the same
files as the local executor (planted tiny Llama; the model loads in the Ray actors).

Ray runs in its own network namespace (`unshare -n`, loopback only), as in test_ray_executor.py;
the body is explain_ray_body.py.
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
from explain_fixtures import EXAMPLE_OPTS, record_planted

from neuron2graph.cli import app
from system_tools import require_tool

BODY = Path(__file__).with_name("explain_ray_body.py")
UNITS = ["--neurons", "1:0,1:1"]
EXPLAIN = [*UNITS, "--explainer", "graph", "--augmenter", "none", *EXAMPLE_OPTS]
SCORE = [*UNITS, "--judge", "none", "--scorers", "detection,intervention", *EXAMPLE_OPTS]


def _plain(obj: Any) -> Any:
    """JSON without timings, floats to 5 decimals (Ray actors sum in another thread order)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return round(obj, 5) if isinstance(obj, float) else obj


def _files(run: Path) -> dict[str, Any]:
    return {str(p.relative_to(run)): _plain(json.loads(p.read_text()))
            for p in sorted((run / "explain").rglob("*.json"))}


def test_explain_and_score_on_ray(tmp_path: Path) -> None:
    require_tool("unshare", "util-linux")
    if os.geteuid() != 0:
        pytest.skip("unshare -n needs root (CI runs as root)")
    base, _ = record_planted(tmp_path, steerable=True)
    ray_run = tmp_path / "ray"
    shutil.copytree(base, ray_run)
    for args in (["explain", str(base), *EXPLAIN], ["score", str(base), *SCORE]):
        res = CliRunner().invoke(app, [*args, "--quiet", "--json"])
        assert res.exit_code == 0, res.output
    temp = Path("/tmp") / f"re{os.getpid()}"  # short: Ray's AF_UNIX socket paths must fit
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    opts = json.dumps({"explain": EXPLAIN, "score": SCORE})
    script = f"ip link set lo up && exec {sys.executable} {BODY} {ray_run} {temp} '{opts}'"
    try:
        proc = subprocess.run(["unshare", "-n", "bash", "-c", script], env=env,
                              capture_output=True, text=True, timeout=400)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["node_ip"] == "127.0.0.1"
    for step in ("explain", "score", "again"):
        assert out[step]["rc"] == 0, out[step]["stderr"]
    assert out["explain"]["doc"]["explained"] == 2
    assert out["score"]["doc"]["computed"] == 2 and out["score"]["doc"]["failed_calls"] == {}
    assert (out["again"]["doc"]["computed"], out["again"]["doc"]["reused"]) == (0, 2)
    assert _files(ray_run) == _files(base)
    for name in ("explain-graph", "score"):
        manifest = json.loads((ray_run / "stages" / f"{name}.json").read_text())
        assert manifest["status"] == "complete" and manifest["n_done"] == 2
