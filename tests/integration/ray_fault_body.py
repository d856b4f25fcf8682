"""Body of test_ray_executor.py, run inside its own network namespace (`unshare -n`).

argv: RUN_KILL_WORKER RUN_KILL_DRIVER TEMP_DIR RUN_EVAL. Starts a local Ray cluster on 127.0.0.1,
builds graphs on RUN_KILL_WORKER with 2 actors while one actor process is SIGKILLed mid-item, then
runs `n2g build --executor ray` drivers on RUN_KILL_DRIVER against the same cluster: the first one
is SIGKILLed after a few units, the second resumes. Last, `n2g eval --executor ray` (EVAL_ARGS,
2 actors) evaluates RUN_EVAL, for the test to compare with a local evaluation. Prints one JSON
document of what happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import ray

from neuron2graph.n2g.stage import BuildStageConfig, run
from neuron2graph.stages import ItemResult, WorkerSpec, WorkItem
from neuron2graph.stages.ray_executor import RayExecutor

CONFIG = BuildStageConfig(layer=1, sample=8, batch_neurons=1, augmenter=None, device="cpu")
BUILD_ARGS = ["--layer", "1", "--sample", "8", "--batch-neurons", "1", "--no-augment",
              "--device", "cpu"]
EVAL_ARGS = ["--layers", "1", "--per-layer", "4", "--augmenter", "none", "--device", "cpu",
             "--quiet", "--json"]
"""`n2g eval` options shared by the Ray run here and the local run in the test."""


class KillingExecutor(RayExecutor):
    """Kills the process of an actor that is busy with an item, after the first result."""

    killed: ClassVar[dict[str, Any]] = {}

    def run(self, spec: WorkerSpec, items: Sequence[WorkItem], *,
            stop: Callable[[], bool] | None = None) -> Iterator[ItemResult]:
        for res in super().run(spec, items, stop=stop):
            if not self.killed:
                index, item = next(iter(self.busy.items()))
                os.kill(self.pids[index], signal.SIGKILL)
                self.killed.update(pid=self.pids[index], item=str(item))
            yield res


def driver(run_dir: str, address: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "neuron2graph", "build", run_dir, *BUILD_ARGS, "--quiet",
           "--json", "--executor", "ray", "--address", address, "--workers", "1",
           "--cpus-per-worker", "0.5"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE)


def n_done(run_dir: str) -> int:
    try:
        return int(json.loads((Path(run_dir) / "stages" / "build.json").read_text())["n_done"])
    except (OSError, ValueError, KeyError):
        return 0


def main() -> None:
    run_worker, run_driver, temp, run_eval = sys.argv[1:5]
    t0 = time.perf_counter()
    info = ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    out: dict[str, Any] = {"node_ip": ray.util.get_node_ip_address(),
                           "address": info.address_info["address"]}
    out["init_s"] = round(time.perf_counter() - t0, 1)
    executor = KillingExecutor(2, cpus_per_worker=0.5)
    outcome = run(CONFIG, run_worker, executor=executor, progress=False)
    out["worker_kill"] = {"killed": executor.killed, "computed": outcome.computed,
                          "failed": outcome.failed, "pending": len(outcome.pending),
                          "planned": len(outcome.planned)}
    out["worker_kill_s"] = round(time.perf_counter() - t0, 1)
    first = driver(run_driver, out["address"])
    deadline = time.monotonic() + 120
    while n_done(run_driver) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()
    first.wait()
    out["driver_kill"] = {"done_at_kill": n_done(run_driver), "rc": first.returncode}
    second = driver(run_driver, out["address"])
    stdout, _ = second.communicate(timeout=120)
    rows = json.loads(stdout)
    out["driver_kill"].update(rc2=second.returncode,
                              skipped=sum(r["status"] != "built" for r in rows),
                              built=sum(r["status"] == "built" for r in rows))
    t1 = time.perf_counter()
    ev = subprocess.run([sys.executable, "-m", "neuron2graph", "eval", run_eval, *EVAL_ARGS,
                         "--executor", "ray", "--address", out["address"], "--workers", "2",
                         "--cpus-per-worker", "0.5"], capture_output=True, text=True,
                        timeout=180)
    out["eval"] = {"rc": ev.returncode, "stderr": ev.stderr[-2000:],
                   "seconds": round(time.perf_counter() - t1, 1)}
    out["total_s"] = round(time.perf_counter() - t0, 1)
    ray.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
