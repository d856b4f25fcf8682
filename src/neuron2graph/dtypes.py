"""Dtype names, in one place: the short names users type (fp32, fp16, bf16) and torch's names
(float32, float16, bfloat16, as run.json records them). Torch-free."""

from __future__ import annotations

SHORT_TO_TORCH = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Short name -> torch's name (`getattr(torch, name)` gives the dtype)."""
TORCH_TO_SHORT = {v: k for k, v in SHORT_TO_TORCH.items()}


def short_name(name: object) -> str | None:
    """`float32`, `torch.float32` or `fp32` -> `fp32`; None for anything else (or None)."""
    text = str(name).removeprefix("torch.")
    return text if text in SHORT_TO_TORCH else TORCH_TO_SHORT.get(text)


def torch_name(name: str) -> str:
    """`fp32` -> `float32`; a torch name is returned unchanged."""
    return SHORT_TO_TORCH.get(name, name)


__all__ = ["SHORT_TO_TORCH", "TORCH_TO_SHORT", "short_name", "torch_name"]
