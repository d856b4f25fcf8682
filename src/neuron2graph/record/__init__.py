"""Recording: one streaming pass over a corpus -> per-neuron top-K windows, a uniform sample,
max, density, firing rate and histogram, stored in a run directory (see docs/record.md)."""

from neuron2graph.record.config import RecordConfig
from neuron2graph.record.recorder import record

__all__ = ["RecordConfig", "record"]
