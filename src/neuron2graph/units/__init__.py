"""Units: what a run studies (MLP neurons, later SAE and transcoder latents), behind one
`ActivationSource` interface. Add a kind: one module here + one line in `registry.SOURCES`."""

from neuron2graph.units.registry import SOURCES, make_source, run_units, source_for_run
from neuron2graph.units.source import ActivationSource

__all__ = ["SOURCES", "ActivationSource", "make_source", "run_units", "source_for_run"]
