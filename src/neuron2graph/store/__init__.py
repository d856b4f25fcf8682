"""The run directory: manifest, arrays, graphs and the SQLite index (docs/run-format.md).

Importing this package never imports torch.
"""

from neuron2graph.store.run import FORMAT, FORMAT_VERSION, Example, Run

__all__ = ["FORMAT", "FORMAT_VERSION", "Example", "Run"]
