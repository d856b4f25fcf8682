"""One streaming pass over a corpus that records, for every neuron of the chosen layers, what the
later stages need: top-K windows with per-token activations, a uniform sample of windows, max,
density, firing rate and a histogram (see `state.py` for the buffers, `writer.py` for the files).

The pass is resumable: the state is checkpointed atomically every few batches; re-running the
same command loads the checkpoint, skips the windows already seen and continues. Because every
update is deterministic and batches are formed the same way, the result is bit-identical to an
uninterrupted run (tests/integration/test_record_resume.py kills a real process to check).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from neuron2graph.errors import N2GError
from neuron2graph.models import LoadedModel
from neuron2graph.record.config import RecordConfig, identity_diff, run_identity
from neuron2graph.record.fold import Folder
from neuron2graph.record.state import Batch, LayerState, SampleState, release_scratch
from neuron2graph.record.writer import checkpoint_dir, finalize, load_checkpoint, save_checkpoint
from neuron2graph.store.atomic import write_json_atomic
from neuron2graph.store.run import FORMAT, FORMAT_VERSION, MANIFEST, Run
from neuron2graph.store.tokenizer import save_tokenizer
from neuron2graph.units.registry import make_source
from neuron2graph.units.source import ActivationSource

FINAL_SNAPSHOT_AFTER_S = 30.0
"""Checkpoint before the final writes only when more than this many seconds of work would be
lost to a kill during them: a snapshot costs about what the final write does (seconds), which
was ~7% of a 10k-token recording, while redoing a short tail costs less (results are the same
either way: the pass is deterministic)."""

OnBatch = Callable[[dict[str, Any]], None]
"""Called after every folded batch with the progress counts (windows, batches, tokens, ...)."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_manifest(out: Path) -> dict[str, Any] | str | None:
    """run.json of `out` as a dict; "corrupt" or "foreign" when it is not ours; None if absent."""
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "corrupt"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "foreign"
    return manifest


def existing_identity(out: Path) -> tuple[str, dict[str, Any]] | None:
    """(status, identity) of the recording already in `out`, or None when there is none."""
    manifest = _read_manifest(out)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("identity"), dict):
        return None
    return str(manifest.get("status")), dict(manifest["identity"])


def prepare_out(out: Path, identity: dict[str, Any], overwrite: bool) -> str:
    """Decide what to do with `out`: "new", "resume" or "done"; clear it when overwriting.

    A run made by another stage without a recording (e.g. a decode-only run of the same model)
    is recorded into in place, keeping that stage's files and tables.
    """
    if out.exists() and not out.is_dir():
        raise N2GError(f"--out {out} is a file: pass a folder for the run")
    if not out.exists() or not any(out.iterdir()):
        return "new"
    manifest = _read_manifest(out)
    if manifest is None or manifest == "foreign":
        raise N2GError(
            f"--out {out} exists and is not a neuron2graph run (refusing to touch it): "
            "choose another folder"
        )
    if manifest == "corrupt" or overwrite:
        if not overwrite:
            raise N2GError(
                f"{out / MANIFEST} is corrupt: pass --overwrite to replace the run, or choose "
                "another --out"
            )
        shutil.rmtree(out)
        return "new"
    assert isinstance(manifest, dict)
    old = manifest.get("identity")
    if not isinstance(old, dict):
        spec = (manifest.get("model") or {}).get("spec")
        if spec not in (None, identity["model"]):
            raise N2GError(
                f"{out} holds a run of model {spec!r}, not {identity['model']!r}: pass "
                "--overwrite to replace it, or choose another --out"
            )
        return "new"
    diff = identity_diff(old, identity)
    if diff:
        raise N2GError(
            f"{out} already holds a recording with a different configuration (differs in: "
            f"{', '.join(diff)}): pass --overwrite to replace it, or choose another --out"
        )
    return "done" if manifest.get("status") == "complete" else "resume"


def _batches(
    windows: Iterable[Any], batch_size: int, max_tokens: int | None, width: int
) -> Iterator[list[Any]]:
    batch: list[Any] = []
    seen = 0
    for w in windows:
        if max_tokens is not None and seen >= max_tokens:
            break
        if len(w.token_ids) > width:
            raise N2GError(
                f"window {w.index} has {len(w.token_ids)} tokens, more than --window {width}: "
                "cut the corpus with the same window length"
            )
        if not w.token_ids:
            continue
        seen += len(w.token_ids)
        batch.append(w)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _make_batch(windows: Sequence[Any], width: int, pad_id: int, bos_id: int | None) -> Batch:
    b = len(windows)
    tokens = torch.full((b, width), pad_id, dtype=torch.int32)
    length = torch.zeros(b, dtype=torch.int32)
    for i, w in enumerate(windows):
        tokens[i, : len(w.token_ids)] = torch.tensor(w.token_ids, dtype=torch.int32)
        length[i] = len(w.token_ids)
    valid = torch.arange(width)[None, :] < length[:, None]
    has_bos = tokens[:, 0] == bos_id if bos_id is not None else torch.zeros(b, dtype=torch.bool)
    valid[:, 0] &= ~has_bos
    fast = bool(has_bos.all()) and bool((length == width).all())
    window = torch.tensor([w.index for w in windows], dtype=torch.int64)
    return Batch(window=window, length=length, tokens=tokens, valid=valid, bos_only_excluded=fast)


def forward_batch(
    source: ActivationSource | LoadedModel, chunk: Sequence[Any], layers: Sequence[int],
    width: int, pad_id: int, bos_id: int | None,
) -> tuple[Batch, dict[int, torch.Tensor]]:
    """The bare part of a step: pack windows (right padding) and run the truncated forward of
    the unit source (a bare `LoadedModel` means its MLP neurons).

    Activations come back on the CPU, where the running state lives (on a GPU that is one
    small copy per layer and batch; a GPU-resident state is not implemented yet).
    """
    batch = _make_batch(chunk, width, pad_id, bos_id)
    mask = None if bool((batch.length == width).all()) else (
        torch.arange(width)[None, :] < batch.length[:, None]).long()
    if isinstance(source, LoadedModel):
        source = make_source("neurons", source)
    acts = source.activations(batch.tokens.long(), layers, attention_mask=mask)
    return batch, {layer: a.cpu() for layer, a in acts.items()}


def record(
    lm: LoadedModel,
    windows: Iterable[Any],
    layers: Sequence[int],
    out: str | Path,
    config: RecordConfig | None = None,
    progress: bool = True,
    *,
    corpus: dict[str, Any] | None = None,
    overwrite: bool = False,
    source: ActivationSource | None = None,
    on_batch: OnBatch | None = None,
) -> Run:
    """Record `layers` of `lm` over `windows` (corpus `Window`s) into the run folder `out`.

    `corpus` is the corpus description for the manifest (`describe_corpus(spec)`); its `spec` is
    part of the run identity. `source` gives the units (default: the MLP neurons of `lm`); the
    manifest names its kind. `on_batch(progress)` is called after every batch (a progress hook;
    the resume test kills the process from it). Returns the finished run. Re-running with the
    same arguments resumes an interrupted recording, or does nothing when it is complete.
    """
    source = source or make_source("neurons", lm)
    config = config or RecordConfig()
    config.validate()
    layers = sorted(set(int(x) for x in layers))
    if not layers:
        raise N2GError("no layers given: pass e.g. --layers 0-3")
    for layer in layers:
        source.check(layer)
    out = Path(out).expanduser()
    corpus = corpus or {"spec": "custom"}
    dtype_name = str(lm.dtype).removeprefix("torch.")
    identity = run_identity(config, model=lm.spec, layers=layers,
                            corpus=str(corpus.get("spec")), dtype=dtype_name,
                            units=source.spec)
    action = prepare_out(out, identity, overwrite)
    if action == "done":
        _say(f"{out} already holds this recording (same configuration): nothing to do")
        return Run.open(out)

    width, n = config.window, source.n_units(layers[0])
    if any(source.n_units(layer) != n for layer in layers):
        raise N2GError("the recorded layers have different unit counts: record them separately")
    states = {layer: LayerState(n, config.top_k, width, config.sample, sparse=source.sparse)
              for layer in layers}
    sample = SampleState(config.sample, width, config.seed)
    done = {"windows": 0, "batches": 0, "tokens": 0, "elapsed_s": 0.0}
    tok = lm.tokenizer
    pad_id = int(tok.pad_token_id) if getattr(tok, "pad_token_id", None) is not None else 0
    bos_id = getattr(tok, "bos_token_id", None) if config.bos != "never" else None
    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "status": "recording",
        "identity": identity,
        "model": {"spec": lm.spec, "family": lm.sites.family,
                  "model_type": getattr(getattr(lm.model, "config", None), "model_type", None),
                  "dtype": dtype_name, "device": str(lm.device)},
        "weights_hash": lm.weights_hash, "n_layers": lm.n_layers, "n_neurons": n,
        "units": source.kind, "unit_site": source.site, "unit_source": source.spec,
        "layers": layers, "corpus": corpus,
        "record": {**config.identity(), "checkpoint_every": config.checkpoint_every},
        "bos_token_id": bos_id, "package_version": _version(), "created": _now(),
    }
    if action == "resume":
        loaded = load_checkpoint(out, states, sample)
        if loaded is not None:
            if loaded.get("weights_hash") != lm.weights_hash:
                raise N2GError(
                    f"{out} was recorded with different model weights: pass --overwrite to restart"
                )
            done = {k: loaded[k] for k in done}
            _say(f"resuming {out} from its checkpoint: {done['windows']} windows, "
                 f"{done['tokens']} tokens already recorded")
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(lm.tokenizer, out)
    previous = _read_manifest(out)
    if isinstance(previous, dict):  # keep what other stages noted (e.g. "decode")
        manifest = {**previous, **manifest}
        if action == "resume":
            manifest["created"] = previous.get("created", manifest["created"])
    write_json_atomic(out / MANIFEST, manifest)

    def snapshot() -> None:
        save_checkpoint(out, states, sample, {**done, "weights_hash": lm.weights_hash})

    remaining = (None if config.max_tokens is None
                 else max(0, config.max_tokens - int(done["tokens"])))
    stream = _skip(windows, int(done["windows"]))
    bar = _bar(progress, config.max_tokens, int(done["tokens"]))
    start, last_ckpt, run_batches = time.perf_counter(), time.perf_counter(), 0
    saved_at: float = -1
    base_elapsed = float(done["elapsed_s"])
    forwards = (forward_batch(source, chunk, layers, width, pad_id, bos_id)
                for chunk in _batches(stream, config.batch_size, remaining, width))
    try:
        # On an accelerator, batch i is folded on host threads while the forward of batch i + 1
        # runs on the device; on a CPU the forward needs the cores and the fold runs between
        # forwards (fold.py says why). A batch comes back from `folded` once it is folded.
        overlap = torch.device(lm.device).type != "cpu"
        with Folder(states, sample, background=overlap) as folder:
            for batch in folder.folded(forwards):
                n_tok = int(batch.length.sum())
                done["windows"] += len(batch.window)
                done["batches"] += 1
                done["tokens"] += n_tok
                done["elapsed_s"] = base_elapsed + time.perf_counter() - start
                run_batches += 1
                if bar is not None:
                    bar.update(n_tok)
                now = time.perf_counter()
                every = config.checkpoint_every
                if ((every is not None and done["batches"] % every == 0)
                        or now - last_ckpt >= config.checkpoint_seconds):
                    snapshot()
                    last_ckpt, saved_at = now, done["batches"]
                if on_batch is not None:
                    on_batch({**done, "run_batches": run_batches})
    finally:
        release_scratch()
        if bar is not None:
            bar.close()
    if done["windows"] == 0:
        raise N2GError("the corpus produced no token windows: use a corpus with more text")
    if saved_at != done["batches"] and time.perf_counter() - last_ckpt > FINAL_SNAPSHOT_AFTER_S:
        snapshot()  # a kill during the final writes then resumes straight into them
    counted = _counted_tokens(states)
    finalize(out, states, sample, counted)
    elapsed = float(done["elapsed_s"])
    manifest.update({
        "status": "complete", "finished": _now(), "tokens": int(done["tokens"]),
        "windows": int(done["windows"]), "batches": int(done["batches"]),
        "recorded_tokens": counted,
        "timings": {"elapsed_s": round(elapsed, 3),
                    "tokens_per_s": round(done["tokens"] / elapsed, 1) if elapsed else None},
        "sample_windows": int((sample.key >= 0).sum()),
    })
    write_json_atomic(out / MANIFEST, manifest)
    shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
    return Run.open(out)


def _counted_tokens(states: dict[int, LayerState]) -> int:
    """Tokens that entered the statistics (all tokens but the BOS of each window): the histogram
    of any neuron counts each of them exactly once."""
    st = next(iter(states.values()))
    return int(st.hist.view(st.n, -1)[0].sum())


def _skip(windows: Iterable[Any], n: int) -> Iterator[Any]:
    it = iter(windows)
    for _ in range(n):
        if next(it, None) is None:
            break
    return it


def _bar(enabled: bool, total: int | None, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="tok", unit_scale=True, desc="record",
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def _version() -> str:
    from neuron2graph import __version__

    return __version__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
