"""Experiment (issue 15): a token-embedding back-off for firings on tokens the graph never saw.

Why: benchmarks/quality.py's miss analysis shows that most held-out firings the graph misses are
on tokens that are no activating node of the graph, and most of those never fire in any train
window, so no method fitted on the train windows can know them from the token itself. The
studied model may: a token whose input embedding is close to an activating token of the graph
(` Water` next to ` water`, a plural, another spelling) often drives the neuron the same way. Here
a position whose token is not in the graph is predicted as if its token were the graph's nearest
activating token by cosine similarity of the input embeddings, when that similarity reaches `s`.

Scored on VALIDATION windows only (no test window is read), with the improved method's frozen
defaults (`ImproveConfig()`), on graphs cached by benchmarks/quality.py:

    python benchmarks/quality_embed.py RUN --graphs OUT/noaug20 --layers 0,5,10,15,20,25,29 \\
        --per-layer 6

Everything printed is measured here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from neuron2graph.evaluate.levels import levels_split, score_levels
from neuron2graph.evaluate.protocol import EvalConfig, select_neurons
from neuron2graph.n2g.calibrate import CalibrateConfig, calibrate, predict_at
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.n2g.pipeline import ImproveConfig
from neuron2graph.store.run import Run
from quality import BANDS, band_of, summarise

SIMS = (0.5, 0.6, 0.7, 0.8, 0.9)


def embeddings(run: Run) -> np.ndarray:
    """The run model's input embeddings, centred (raw embeddings share a large common direction:
    uncentred, most token pairs have cosine > 0.5) and unit-normalised."""
    from neuron2graph.evaluate.builder import load_run_model

    lm = load_run_model(run)
    emb = lm.model.get_input_embeddings().weight.detach().float().cpu().numpy()
    emb = emb - emb.mean(axis=0, keepdims=True)
    return np.asarray(emb / np.linalg.norm(emb, axis=1, keepdims=True))


def embed_fn(graph: NeuronGraph, cfg: CalibrateConfig, emb: np.ndarray,
             piece_id: dict[str, int], sim: float | None) -> Callable[[Any], list[float]]:
    """Calibrated prediction; with `sim`, unseen tokens back off to the nearest graph token."""
    roots = list(graph.root.children)
    keys = {graph.key(r): r for r in roots}
    root_ids = [piece_id[r] for r in roots if r in piece_id]
    root_pieces = [r for r in roots if r in piece_id]
    mat = emb[root_ids] if root_ids else np.zeros((0, emb.shape[1]))

    def predict(ex: Any) -> list[float]:
        tokens: list[str] = list(ex.tokens)
        out = []
        for i, tok in enumerate(tokens):
            if graph.key(tok) in keys:
                out.append(predict_at(graph, tokens, i, cfg))
                continue
            if sim is None or not len(mat):
                out.append(0.0)
                continue
            s = mat @ emb[int(ex.token_ids[i])]
            j = int(np.argmax(s))
            if s[j] < sim:
                out.append(0.0)
                continue
            swapped = [*tokens[:i], root_pieces[j], *tokens[i + 1:]]
            out.append(predict_at(graph, swapped, i, cfg))
        return out

    return predict


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--graphs", required=True, help="a build folder of benchmarks/quality.py")
    ap.add_argument("--layers", default="0,5,10,15,20,25,29")
    ap.add_argument("--per-layer", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    run = Run.open(args.run)
    cfg = EvalConfig(protocol="levels", seed=args.seed)
    layers = [int(x) for x in args.layers.split(",")]
    nids = select_neurons(run, cfg, layers=layers, per_layer=args.per_layer).selected
    emb = embeddings(run)
    imp = ImproveConfig()
    val_cfg = EvalConfig(protocol="levels", split="val", seed=args.seed, min_act=cfg.min_act)
    rows = []
    for nid in nids:
        file = Path(args.graphs) / f"{nid.layer}_{nid.neuron}.json"
        if not file.exists():
            continue
        split = levels_split(run, nid, cfg)
        a_max = run.a_max(nid)
        piece_id = {t: int(i) for ex in split.train
                    for t, i in zip(ex.tokens, ex.token_ids, strict=True)}
        windows = [(list(ex.tokens), [float(a) / a_max for a in ex.acts]) for ex in split.train]
        graph = NeuronGraph.load(file)
        c = imp.for_layer(nid.layer)
        calibrate(graph, windows, c)
        preds = {"improved": embed_fn(graph, c, emb, piece_id, None)}
        for s in SIMS:
            preds[f"improved+embed{s}"] = embed_fn(graph, c, emb, piece_id, s)
        rows.append(score_levels(run, nid, val_cfg, preds, split))
    bands: dict[str, list[int]] = {}
    for layer in layers:
        bands.setdefault(band_of(layer), []).append(layer)
    print(f"{len(rows)} neurons; VALIDATION windows; F1 / false firing % by band "
          f"(bands {', '.join(b for b in BANDS if b in bands)})")
    print("| method | " + " | ".join([*bands, "all"]) + " |")
    for m in rows[0]["methods"] if rows else []:
        cells = [summarise(rows, m, ls) for ls in bands.values()] + [summarise(rows, m)]
        txt = [f"{s['f1']:.2f} / {100 * s['ff']:.2f}%"
               if s["f1"] is not None and s["ff"] is not None else "n/a" for s in cells]
        print(f"| {m} | " + " | ".join(txt) + " |")


if __name__ == "__main__":
    main()
