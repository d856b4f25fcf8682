"""Unit kinds by spec: `SOURCES` maps a spec's head (`neurons`; `sae` for `sae:PATH`) to a
constructor `(lm, argument) -> ActivationSource`.

Adding a unit kind = one module in `units/` + one line in `SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel
from neuron2graph.units.source import ActivationSource


def _neurons(lm: LoadedModel, arg: str) -> ActivationSource:
    from neuron2graph.units.neurons import MlpNeurons

    if arg:
        raise N2GError(f"unit spec 'neurons:{arg}' takes no argument: write neurons")
    return MlpNeurons(lm)


def _sae(lm: LoadedModel, arg: str) -> ActivationSource:
    from neuron2graph.units.sae import make_sae_source

    return make_sae_source(lm, arg)


SOURCES: dict[str, Callable[[LoadedModel, str], ActivationSource]] = {
    "neurons": _neurons,
    "sae": _sae,
}
"""Spec head -> constructor. The constructor gets the text after `head:` ("" when none)."""

DEFAULT_UNITS = "neurons"


def make_source(spec: str | None, lm: LoadedModel) -> ActivationSource:
    """The source for `spec` (`neurons`, or `KIND:ARG` such as `sae:PATH`) on `lm`."""
    text = (spec or DEFAULT_UNITS).strip()
    head, _, arg = text.partition(":")
    if head not in SOURCES:
        raise N2GError(f"unknown unit kind {text!r}: use one of {', '.join(sorted(SOURCES))}")
    return SOURCES[head](lm, arg)


def run_units(manifest: dict[str, Any]) -> str:
    """The unit kind a run manifest names; runs from before unit kinds hold neurons."""
    units = manifest.get("units")
    return str(units) if units else DEFAULT_UNITS


def source_for_run(run: Any, lm: LoadedModel) -> ActivationSource:
    """The source that recorded `run` (a `store.Run` or a manifest dict), rebuilt on `lm`."""
    manifest = run if isinstance(run, dict) else run.manifest
    spec = manifest.get("unit_source") or run_units(manifest)
    return make_source(str(spec), lm)
