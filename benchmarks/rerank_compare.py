"""Re-ranking with a shared prefix KV cache vs whole rows, on real neurons: same graphs? seconds?

    python benchmarks/rerank_compare.py RUN 0:788,10:530

RUN is a recorded run of the default model (e.g. the one benchmarks/build.py writes). Per neuron
the graph is built four times, whole-row re-ranking (`LayerRunner._rerank_rows` on every row, as
before the prefix cache) and the prefix-cached `rerank_many` interleaved (old, new, new, old; one
torch thread), printing build and re-ranking seconds and token-layers, then whether both graphs
are identical (build stats aside). Everything printed is measured here.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from neuron2graph.ids import NeuronId
from neuron2graph.models import load_model
from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs
from neuron2graph.n2g.runner import LayerRunner
from neuron2graph.store.run import Run

Request = tuple[Sequence[int], int, Sequence[int]]
NEW = LayerRunner.rerank_many


def old_rerank(self: LayerRunner, requests: Sequence[Request]) -> list[list[float]]:
    """Whole rows for every group (the re-ranking before the prefix cache)."""
    rows: dict[tuple[tuple[int, ...], int], float] = {}
    for prompt, k, cands in requests:
        for c in cands:
            rows[((*prompt[:k], int(c), *prompt[k + 1 :]), k)] = 0.0
    self._rerank_rows(rows, list(rows))
    return [[rows[((*p[:k], int(c), *p[k + 1 :]), k)] for c in cs] for p, k, cs in requests]


def timed(fn: Callable[..., Any], acc: dict[str, float]) -> Callable[..., Any]:
    def wrapper(self: LayerRunner, *a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(self, *a, **kw)
        finally:
            acc["rerank"] = acc.get("rerank", 0.0) + time.perf_counter() - t0

    return wrapper


def main() -> None:
    torch.set_num_threads(1)
    run = Run.open(Path(sys.argv[1]))
    lm = load_model("smollm2-135m", device="cpu", dtype="fp32")
    for spec in sys.argv[2].split(","):
        nid = NeuronId.parse(spec)
        ex = run.top_examples(nid, 20)
        req = NeuronRequest(nid.layer, nid.neuron, [list(e.token_ids) for e in ex],
                            run.a_max(nid), acts=[list(e.acts) for e in ex])
        graphs: dict[str, Any] = {}
        for mode in ("old", "new", "new", "old"):
            acc: dict[str, float] = {}
            LayerRunner.rerank_many = timed(old_rerank if mode == "old" else NEW, acc)  # type: ignore[method-assign]
            t0 = time.perf_counter()
            res = build_graphs(lm, [req], N2GConfig())[0]
            wall = time.perf_counter() - t0
            doc = json.loads(json.dumps(res.graph.to_json(), default=str))
            doc.get("meta", {}).pop("stats", None)
            graphs.setdefault(mode, doc)
            st = res.stats
            print(f"{nid} {mode}: build {wall:.1f} s, re-ranking {acc.get('rerank', 0):.1f} s, "
                  f"token-layers {st.token_layers:.0f} (augment "
                  f"{st.stage_token_layers.get('augment', 0):.0f}), "
                  f"{st.augmented_prompts} augmented prompts", flush=True)
        LayerRunner.rerank_many = NEW  # type: ignore[method-assign]
        print(f"{nid}: graphs identical (stats aside): {graphs['old'] == graphs['new']}",
              flush=True)


if __name__ == "__main__":
    main()
