"""Sparse autoencoders and transcoders as units: load (SAELens, sparsify), read, train, align.

    saes = load_saes("checkpoints/run/")          # one folder, or one per hookpoint
    acts = site_activations(lm, ids, [saes[0].info.reads], transform={...: saes[0].encode})

Training (`train.py`) and alignment (`align.py`) import sparsify and scipy lazily. See docs/sae.md.
"""

from neuron2graph.sae.hooks import SITES, HookPoint, parse_sparsify_hookpoint, parse_tl_hook
from neuron2graph.sae.loading import check_against_model, load_saes
from neuron2graph.sae.model import ARCHITECTURES, Sae, SaeInfo, random_like

__all__ = [
    "ARCHITECTURES",
    "SITES",
    "HookPoint",
    "Sae",
    "SaeInfo",
    "check_against_model",
    "load_saes",
    "parse_sparsify_hookpoint",
    "parse_tl_hook",
    "random_like",
]
