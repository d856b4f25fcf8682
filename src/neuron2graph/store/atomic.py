"""Kept for existing imports: the atomic writers live in the neutral `neuron2graph.files`.

They moved there so that the graph schema (`n2g/graph.py`) can write files without importing the
store, and the store can stay free of every stage (docs/architecture.md, "Layering").
"""

from neuron2graph.files import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = ["atomic_path", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]
