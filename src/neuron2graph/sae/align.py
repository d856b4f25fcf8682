"""Match the latents of two coders one-to-one by decoder-direction cosine (seed 003's method).

Each latent writes along its decoder row `W_dec[i]`. Two latents "are the same feature" when
those directions agree. `scipy.optimize.linear_sum_assignment` picks the one-to-one matching
that maximises the summed cosine (the Hungarian algorithm); with coders of different sizes the
smaller one is matched completely. Works across layers of one model (same residual width) and
across two SAEs of one layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neuron2graph.errors import N2GError
from neuron2graph.sae.model import Sae

ALIGN_FORMAT = "neuron2graph/align"


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
    best_any_b = cos.max(dim=0).values
    return {
        "a": a.info.path, "b": b.info.path,
        "a_hook": f"{a.info.writes}", "b_hook": f"{b.info.writes}",
        "summary": {
            "pairs": len(pairs),
            "mean_cosine": float(sims.mean()),
            "median_cosine": float(sims.median()),
            "share_above_0.7": float((sims > 0.7).float().mean()),
            "mean_best_cosine_any": float(best_any.mean()),
            "mean_best_cosine_any_b": float(best_any_b.mean()),
        },
        "pairs": pairs,
    }


def run_coder(run: Any, layer: int | None) -> tuple[Sae, str]:
    """The coder a latent run was recorded with, at `layer` (default: its only layer), and the
    folder it came from. The manifest's `sae:PATH` is tried as written, then beside the run."""
    from neuron2graph.sae.loading import load_saes

    spec = str(run.manifest.get("unit_source") or run.units)
    if not spec.startswith("sae:"):
        raise N2GError(f"{run.path} holds {spec}, not SAE latents: align runs recorded with "
                       "--units sae:PATH")
    raw = Path(spec.removeprefix("sae:")).expanduser()
    for folder in (raw, run.path.parent / raw, run.path / raw):
        if folder.exists():
            break
    else:
        raise N2GError(f"the SAE {raw} that {run.path} was recorded with is gone: restore it "
                       "or align the SAE folders directly")
    coders = {c.info.layer: c for c in load_saes(folder)}
    if layer is None:
        if len(coders) != 1:
            raise N2GError(f"{run.path} has coders at layers {sorted(coders)}: pick one with "
                           "--layer-a/--layer-b")
        layer = next(iter(coders))
    if layer not in coders:
        raise N2GError(f"{run.path} has no coder at layer {layer} (layers {sorted(coders)})")
    return coders[layer], str(folder.resolve())


def _side(run: Any, sae: Sae, coder: str) -> dict[str, Any]:
    return {"run": str(Path(run.path).resolve()), "name": Path(run.path).name,
            "layer": sae.info.layer, "site": run.unit_site, "coder": coder}


def align_runs(path_a: str | Path, path_b: str | Path, *, layer_a: int | None = None,
               layer_b: int | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Match the latents of two latent runs (or two layers of one) and store the matching in
    both runs, `RUN/align/<other>-L<layer>.json`, where the browser finds it (each file lists,
    for every unit of its run, its match in the other and their decoder cosine)."""
    from neuron2graph.files import write_json_atomic
    from neuron2graph.store import Run, layout

    run_a, run_b = Run.open(Path(path_a)), Run.open(Path(path_b))
    sae_a, coder_a = run_coder(run_a, layer_a)
    sae_b, coder_b = run_coder(run_b, layer_b)
    result = align(sae_a, sae_b)
    side_a, side_b = _side(run_a, sae_a, coder_a), _side(run_b, sae_b, coder_b)
    s = result["summary"]
    swapped = {**s, "mean_best_cosine_any": s["mean_best_cosine_any_b"],
               "mean_best_cosine_any_b": s["mean_best_cosine_any"]}
    docs = [
        (run_a, side_a, side_b, s, [(p["a"], p["b"], p["cosine"]) for p in result["pairs"]]),
        (run_b, side_b, side_a, swapped,
         [(p["b"], p["a"], p["cosine"]) for p in result["pairs"]]),
    ]
    written: list[Path] = []
    for run, me, other, summary, pairs in docs:
        path = layout.align_dir(run.path) / f"{other['name']}-L{other['layer']}.json"
        if run is run_b and path == written[0]:
            continue  # one run aligned with itself at the same layer: one file
        write_json_atomic(path, {
            "format": ALIGN_FORMAT, "version": 1, "self": me, "other": other,
            "summary": summary,
            "pairs": [{"unit": u, "match": m, "cosine": c} for u, m, c in pairs]})
        written.append(path)
    return result, written
