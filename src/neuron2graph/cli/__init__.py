"""Command line `n2g`. Thin: parses options into configs and calls the Python API.

Each stage registers its commands in its own module below; importing them must not import torch.
"""

from __future__ import annotations

from neuron2graph.cli import (  # noqa: F401  (imported to register commands)
    build_cmd,
    decode_cmd,
    eval_cmd,
    explain_cmd,
    record_cmd,
    run_cmd,
    sae_cmd,
    search_cmd,
    web_cmd,
)
from neuron2graph.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
