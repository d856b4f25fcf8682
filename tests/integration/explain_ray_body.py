"""Body of test_explain_ray.py, run inside its own network namespace (`unshare -n`).

argv: RUN TEMP_DIR OPTS_JSON. Starts a local Ray cluster on 127.0.0.1, then runs `n2g explain`
(graph explainer: the model loads in the actors) and `n2g score` (intervention: the actors steer
the model) with `--executor ray` against it. Prints one JSON document of what happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import ray


def n2g(*args: str) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "neuron2graph", *args], capture_output=True,
                         text=True, timeout=240)
    return {"rc": res.returncode, "stderr": res.stderr[-2000:],
            "doc": json.loads(res.stdout) if res.returncode == 0 else None}


def main() -> None:
    run_dir, temp, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    t0 = time.perf_counter()
    info = ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    address = info.address_info["address"]
    ray_opts = ["--executor", "ray", "--address", address, "--workers", "2",
                "--cpus-per-worker", "0.5", "--json", "--quiet"]
    out: dict[str, Any] = {"node_ip": ray.util.get_node_ip_address(), "address": address}
    out["explain"] = n2g("explain", run_dir, *opts["explain"], *ray_opts)
    out["score"] = n2g("score", run_dir, *opts["score"], *ray_opts)
    out["again"] = n2g("score", run_dir, *opts["score"], *ray_opts)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    ray.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
