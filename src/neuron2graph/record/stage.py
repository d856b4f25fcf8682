"""The record stage as a library function: `run(RecordStageConfig(...), run_dir) -> Run`.

Recording is one streaming pass over the corpus for all units of the chosen layers at once, so
it is not split into per-unit work items: it resumes from its own checkpoint (recorder.py), and
its identity (model, corpus, layers, dtype, settings) decides between resume, no-op and refusal.
This function answers a repeated command *before* loading the model, and on completion writes
the stage manifest RUN/stages/record.json like every other stage (config, code version, status,
per-unit completion), so that readers find every stage's state in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from neuron2graph.dtypes import torch_name
from neuron2graph.errors import N2GError
from neuron2graph.record.config import RecordConfig, identity_diff, run_identity
from neuron2graph.stages.config import runtime
from neuron2graph.stages.manifest import StageManifest
from neuron2graph.store import layout


@dataclass(frozen=True)
class RecordStageConfig:
    """Settings of `n2g record` (docs/record.md)."""

    model: str = "smollm2-135m"
    corpus: str = "default"
    layers: tuple[int, ...] = (0, 1, 2, 3)
    """The layers to record; empty: every layer that has units (`--layers all`)."""
    units: str = "neurons"
    """Unit source spec: `neurons` (MLP neurons) or `sae:PATH` (docs/units.md)."""
    record: RecordConfig = field(default_factory=RecordConfig)
    dtype: str | None = None
    """fp32, fp16, bf16 or None (fp32 on CPU, bf16 on GPU)."""
    device: str = runtime("auto")
    progress: bool = runtime(True)


def _known_layers(config: RecordStageConfig, out: Path) -> RecordStageConfig:
    """`--layers all` resolved without loading the model where the run already says how many
    layers this model has (a repeated command stays a no-op that loads nothing)."""
    from neuron2graph.record.recorder import _read_manifest

    if config.layers or config.units != "neurons":
        return config
    previous = _read_manifest(out) if out.is_dir() else None
    model = previous.get("model") if isinstance(previous, dict) else None
    if (isinstance(model, dict) and model.get("spec") == config.model
            and isinstance(previous, dict) and isinstance(previous.get("n_layers"), int)):
        return replace(config, layers=tuple(range(int(previous["n_layers"]))))
    return config


def _already_done(config: RecordStageConfig, out: Path, overwrite: bool) -> bool:
    """True when `out` holds this very recording; refuse another one (unless `overwrite`)."""
    from neuron2graph.record.recorder import existing_identity

    found = existing_identity(out) if out.is_dir() and config.layers else None
    if found is None or found[0] != "complete" or overwrite:
        return False
    old = found[1]
    # "auto" resolves only once the device is known: compare it loosely.
    want = old.get("dtype", "") if config.dtype is None else torch_name(config.dtype)
    ident = run_identity(config.record, model=config.model, layers=list(config.layers),
                         corpus=config.corpus, dtype=want, units=config.units)
    diff = identity_diff(old, ident)
    if diff:
        raise N2GError(
            f"{out} already holds a recording with a different configuration (differs in: "
            f"{', '.join(diff)}): pass --overwrite to replace it, or choose another --out"
        )
    return True


def _write_manifest(out: Path) -> None:
    from neuron2graph import __version__
    from neuron2graph.store.run import Run

    run = Run.open(out)
    manifest = StageManifest(path=layout.stage_manifest_file(out, "record"), stage="record",
                             config=dict(run.manifest.get("identity") or {}),
                             code_version=__version__, status="complete")
    for layer in run.layers:
        manifest.mark_done(layer, list(range(run.n_neurons)))
    manifest.save()


def run(config: RecordStageConfig, run_dir: str | Path, *, overwrite: bool = False) -> bool:
    """Record into `run_dir`; returns False when it already held this recording (no-op)."""
    config.record.validate()
    out = Path(run_dir).expanduser()
    config = _known_layers(config, out)
    if _already_done(config, out, overwrite):
        return False
    from neuron2graph.corpus import describe_corpus, iter_documents, iter_windows
    from neuron2graph.models import load_model
    from neuron2graph.record.recorder import record
    from neuron2graph.units import make_source

    description = describe_corpus(config.corpus)
    lm = load_model(config.model, device=config.device, dtype=config.dtype)
    source = make_source(config.units, lm)
    if not config.layers:  # --layers all: every layer that has units
        config = replace(config, layers=tuple(source.layers()))
        if _already_done(config, out, overwrite):
            return False
    for layer in config.layers:
        source.check(layer)
    windows = iter_windows(iter_documents(config.corpus), lm.tokenizer,
                           length=config.record.window, bos=config.record.bos)
    record(lm, windows, list(config.layers), out, config.record, progress=config.progress,
           corpus=description, overwrite=overwrite, source=source)
    _write_manifest(out)
    return True


__all__ = ["RecordStageConfig", "run"]
