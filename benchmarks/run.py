"""Whole-layer throughput of the build stage: local executor vs 1 and 2 Ray workers.

Records a slice of the default model (one layer, --tokens of the stdlib corpus; reused when it
exists), then builds graphs for the same --neurons alive units of that layer three times, each
into a fresh copy of the recording: with `LocalExecutor`, and with `RayExecutor` at 1 and 2
workers on a local Ray cluster. Prints wall time, seconds per unit and the ratio to local, and
checks that the three runs wrote the same graphs (timings and float rounding aside).

Ray runs in its own network namespace (loopback only): the script re-runs itself under
`unshare -n` (root) unless --inside is given. Usage:

    PYTHONPATH=src python benchmarks/run.py --layer 10 --neurons 16 [--augment]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


def max_float_diff(a: Any, b: Any) -> float | None:
    """The largest |a - b| over matching floats; None when the structure or a non-float differs
    (rounding both to 5 decimals instead flagged 1e-5 differences at rounding boundaries)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return None
        parts = [max_float_diff(a[k], b[k]) for k in a]
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return None
        parts = [max_float_diff(x, y) for x, y in zip(a, b, strict=True)]
    elif isinstance(a, float) and isinstance(b, float):
        return abs(a - b)
    else:
        return 0.0 if a == b else None
    if any(p is None for p in parts):
        return None
    return max((p for p in parts if p is not None), default=0.0)


def graphs(run_dir: Path) -> dict[str, Any]:
    return {p.name: plain(json.loads(p.read_text()))
            for p in sorted((run_dir / "graphs").glob("*/*.json"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", type=int, default=10)
    ap.add_argument("--neurons", type=int, default=16, help="alive units of the layer to build")
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--augment", action="store_true", help="causal augmentation (slow)")
    ap.add_argument("--cpus-per-worker", type=float, default=1.0)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                    help="build dtype (the recording is fp32 either way)")
    ap.add_argument("--executors", default="local,ray1,ray2",
                    help="which to run, in this order: local, ray1, ray2")
    ap.add_argument("--root", type=Path, default=Path("runs/bench-run"))
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.inside:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        cmd = " ".join([sys.executable, *sys.argv, "--inside"])
        sys.exit(subprocess.call(["unshare", "-n", "bash", "-c",
                                  f"ip link set lo up && exec {cmd}"], env=env))

    import ray
    import torch

    from neuron2graph.n2g.stage import BuildStageConfig, run
    from neuron2graph.record.config import RecordConfig
    from neuron2graph.record.stage import RecordStageConfig
    from neuron2graph.record.stage import run as record
    from neuron2graph.stages.ray_executor import RayExecutor

    base = args.root / "base"
    t0 = time.perf_counter()
    record(RecordStageConfig(model="smollm2-135m", corpus=args.corpus, layers=(args.layer,),
                             record=RecordConfig(window=64, max_tokens=args.tokens),
                             device="cpu", dtype="fp32", progress=False), base)
    print(f"recording of layer {args.layer} ready in {time.perf_counter() - t0:.1f} s "
          f"({os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.1f})", flush=True)
    config = BuildStageConfig(layer=args.layer, sample=args.neurons, batch_neurons=1,
                              augmenter="causal" if args.augment else None, device="cpu",
                              dtype=args.dtype)
    temp = Path("/tmp") / f"rb{os.getpid()}"
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, _temp_dir=str(temp),
             log_to_driver=False)
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    rows = []
    made: dict[str, dict[str, Any]] = {}
    try:
        wanted = [e.strip() for e in args.executors.split(",")]
        for name in [n for n in ("local", "ray1", "ray2") if n in wanted]:
            executor = (None if name == "local" else
                        RayExecutor(int(name[-1]), cpus_per_worker=args.cpus_per_worker))
            name = name.replace("ray", "ray x")
            out = args.root / name.replace(" ", "")
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(base, out, ignore=shutil.ignore_patterns("graphs", "stages"))
            t0 = time.perf_counter()
            outcome = run(config, out, executor=executor, progress=False)
            wall = time.perf_counter() - t0
            busy = sum(float(r.get("seconds", 0.0)) for r in outcome.rows.values())
            rows.append((name, outcome.computed, wall, busy))
            made[name] = graphs(out)
            print(f"{name:>7}: {outcome.computed} units in {wall:6.1f} s wall "
                  f"({wall / max(outcome.computed, 1):.2f} s/unit; worker busy "
                  f"{busy / max(outcome.computed, 1):.2f} s/unit; load average "
                  f"{os.getloadavg()[0]:.1f} at the end)", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    local_wall = rows[0][2]  # the first executor run is the baseline ("local" by default)
    print(f"\n{'executor':>8} {'units':>6} {'wall s':>8} {'s/unit':>7} {'busy s/unit':>11} "
          f"{'vs ' + rows[0][0]:>8}")
    for name, n, wall, busy in rows:
        print(f"{name:>8} {n:6d} {wall:8.1f} {wall / max(n, 1):7.2f} {busy / max(n, 1):11.2f} "
              f"{local_wall / wall:7.2f}x")
    first = rows[0][0]
    diffs = [max_float_diff(made[k], made[first]) for k in made]
    same = all(d is not None and d <= 1e-4 for d in diffs)
    worst = max((d for d in diffs if d is not None), default=0.0)
    print(f"graphs equal to {first}'s (same structure, tokens and examples; floats within 1e-4): "
          f"{same}; largest float difference {worst:.2g}")
    for name in list(made)[1:]:  # bf16 sums differ with the thread count: say how many differ
        keys = made[first].keys() | made[name].keys()
        unequal = [k for k in keys if k not in made[first] or k not in made[name]
                   or (d := max_float_diff(made[first][k], made[name][k])) is None or d > 1e-4]
        print(f"{name}: {len(keys) - len(unequal)} of {len(keys)} graphs equal to {first}'s"
              + (f" (differ: {', '.join(sorted(unequal)[:5])}{' ...' if len(unequal) > 5 else ''})"
                 if unequal else ""))


if __name__ == "__main__":
    main()
