"""Real activations for the try-it box: the only place the browser touches torch.

Imported lazily, and only when the server was started with `--model`; the model is loaded once
and reused under a lock (one forward at a time on a CPU box is what we want anyway).
"""

from __future__ import annotations

import threading
from typing import Any

from neuron2graph.ids import NeuronId

_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}


def real_activations(model: str, view: Any, nid: NeuronId, text: str) -> list[float]:
    """Normalised activations (a / a_max) of unit `nid` on `text`, token by token, read
    through the run's own unit source (the kind named in its manifest)."""
    from neuron2graph.models import load_model
    from neuron2graph.units import source_for_run

    with _LOCK:
        lm = _MODELS.get(model)
        if lm is None:
            lm = _MODELS[model] = load_model(model)
        import torch

        ids = view.run.tokenizer().encode(text[:5000], add_special_tokens=False)
        input_ids = torch.tensor([ids], dtype=torch.long)
        sel = {nid.layer: torch.tensor([nid.neuron])}
        acts = source_for_run(view.run, lm).activations(input_ids, [nid.layer], units=sel)
        a = acts[nid.layer][0, :, 0].float().tolist()
    a_max = view.run.a_max(nid) or 1.0
    return [round(x / a_max, 4) for x in a]
