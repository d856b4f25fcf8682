"""Commands of this stage (registered on import; keep torch imports inside functions)."""

from neuron2graph.cli.app import app  # noqa: F401
