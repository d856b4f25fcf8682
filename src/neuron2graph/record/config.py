"""The recording configuration, and what makes two recordings "the same" (for resume and no-op)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from neuron2graph.errors import N2GError


@dataclass(frozen=True)
class RecordConfig:
    """Options of one recording pass. Saved as `run.json["record"]`."""

    window: int = 64
    """Tokens per window, BOS included (the corpus cuts windows of this length)."""
    top_k: int = 20
    """Top activating windows kept per neuron (the paper used Neuroscope's top 20)."""
    sample: int = 256
    """Windows in the uniform random sample kept for every neuron (false-positive tests)."""
    batch_size: int = 32
    """Windows per forward pass. Part of the identity: batch shape can change float rounding."""
    max_tokens: int | None = 100_000
    """Stop once this many tokens (BOS included) were read; None reads the whole corpus."""
    seed: int = 0
    """Seed of the window hash that picks the random sample."""
    bos: str = "auto"
    """BOS mode the windows were cut with (auto, always, never); informational."""
    checkpoint_every: int | None = None
    """Also checkpoint the running state every this many batches; None: by time only."""
    checkpoint_seconds: float = 300.0
    """Checkpoint at least this often. By time, not batches, by default: a checkpoint of 4
    SmolLM2 layers writes ~300 MB (~1.3 s), which every 50 batches cost ~5% of an idle
    machine's recording; every 5 minutes it is under 1%, and a kill loses at most 5 minutes."""

    def validate(self) -> None:
        if self.top_k < 1:
            raise N2GError(f"--top-k {self.top_k} is invalid: keep at least 1 example (default 20)")
        if self.window < 2:
            raise N2GError(f"--window {self.window} is too short: use at least 2 (default 64)")
        if self.batch_size < 1:
            raise N2GError(f"--batch-size {self.batch_size} is invalid: use at least 1")
        if self.sample < 0:
            raise N2GError(f"--sample {self.sample} is invalid: use 0 (none) or more windows")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise N2GError(f"--max-tokens {self.max_tokens} is invalid: use a positive count")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise N2GError("checkpoint_every must be at least 1 batch")

    def identity(self) -> dict[str, Any]:
        """The fields that change results (checkpoint cadence does not)."""
        out = asdict(self)
        out.pop("checkpoint_every")
        out.pop("checkpoint_seconds")
        return out


def run_identity(
    config: RecordConfig, *, model: str, layers: list[int], corpus: str, dtype: str,
    units: str = "neurons",
) -> dict[str, Any]:
    """Everything that must match for a re-run to resume, or to be a no-op, rather than conflict.

    `units` is the unit source's spec (`neurons`, `sae:PATH`)."""
    return {"model": model, "layers": list(layers), "corpus": corpus, "dtype": dtype,
            "units": units, **config.identity()}


_IDENTITY_DEFAULTS = {"units": "neurons"}
"""Identity fields added later, with the value runs recorded before them had."""


def identity_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    def get(d: dict[str, Any], k: str) -> Any:
        return d.get(k, _IDENTITY_DEFAULTS.get(k))

    return sorted(k for k in set(a) | set(b) if get(a, k) != get(b, k))
