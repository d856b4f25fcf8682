"""Match the latents of two coders one-to-one by decoder-direction cosine (seed 003's method).

Each latent writes along its decoder row `W_dec[i]`. Two latents "are the same feature" when
those directions agree. `scipy.optimize.linear_sum_assignment` picks the one-to-one matching
that maximises the summed cosine (the Hungarian algorithm); with coders of different sizes the
smaller one is matched completely. Works across layers of one model (same residual width) and
across two SAEs of one layer.
"""

from __future__ import annotations

from typing import Any

import torch

from neuron2graph.errors import N2GError
from neuron2graph.sae.model import Sae


def decoder_cosines(a: Sae, b: Sae) -> torch.Tensor:
    """`[d_sae_a, d_sae_b]` cosine similarity of decoder rows."""
    if a.info.d_out != b.info.d_out:
        raise N2GError(f"cannot align coders that write {a.info.d_out} and {b.info.d_out} dims: "
                       "decoder directions must live in the same space")
    da = a.W_dec / a.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    db = b.W_dec / b.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return da @ db.T


def align(a: Sae, b: Sae) -> dict[str, Any]:
    """The matching, best pairs first, with a summary (mean, median, share above 0.7)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise N2GError("n2g align needs scipy: pip install 'neuron2graph[sae]'") from None
    cos = decoder_cosines(a, b)
    rows, cols = linear_sum_assignment(cos.double().numpy(), maximize=True)
    sims = cos[torch.as_tensor(rows), torch.as_tensor(cols)]
    order = torch.argsort(sims, descending=True)
    pairs = [{"a": int(rows[i]), "b": int(cols[i]), "cosine": round(float(sims[i]), 6)}
             for i in order.tolist()]
    best_any = cos.max(dim=1).values  # without the one-to-one constraint, for reference
    return {
        "a": a.info.path, "b": b.info.path,
        "a_hook": f"{a.info.writes}", "b_hook": f"{b.info.writes}",
        "summary": {
            "pairs": len(pairs),
            "mean_cosine": float(sims.mean()),
            "median_cosine": float(sims.median()),
            "share_above_0.7": float((sims > 0.7).float().mean()),
            "mean_best_cosine_any": float(best_any.mean()),
        },
        "pairs": pairs,
    }
