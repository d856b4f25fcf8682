"""Train an SAE or transcoder on one layer with Eleuther's sparsify, on a run's corpus.

sparsify's `Trainer` runs the model's *whole* forward for every batch. We hand it `_CutModel`, a
thin wrapper whose forward stops right after the hooked module (its hook runs after sparsify's,
which reads the activations), so layers above it, the final norm and the LM head are never run.

Resuming is sparsify's own: a checkpoint folder holds `state.pt`, optimizer and scheduler state
and the coder; `Trainer.load_state` continues from its step, skipping the windows already used.
After training we load the checkpoint with our own loader and measure it on held-out windows
(the next ones in the corpus, never trained on): fraction of variance unexplained (FVU) and the
share of latents that never fired there.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel
from neuron2graph.sae.hooks import sparsify_hookpoint
from neuron2graph.sae.loading import N2G_META, load_sparsify
from neuron2graph.sae.model import Sae
from neuron2graph.sae.sites import site_activations
from neuron2graph.store.atomic import write_json_atomic

TRAIN_SITES = ("mlp_out", "resid_post", "transcoder")
REPORT = "n2g_train.json"


@dataclass(frozen=True)
class TrainSpec:
    """What `n2g train-sae` trains; saved in the report and compared on resume."""

    layer: int
    site: str = "mlp_out"
    expansion: int = 8
    k: int = 32
    tokens: int = 100_000
    window: int = 64
    batch_size: int = 8
    """Windows per step (sparsify's batch size, in sequences)."""
    seed: int = 0
    eval_windows: int = 32
    save_every: int = 50
    """Checkpoint every this many steps (and at the end)."""
    lr: float | None = None
    """Learning rate; None lets sparsify choose from the latent count."""

    def validate(self) -> None:
        if self.site not in TRAIN_SITES:
            raise N2GError(f"--site {self.site!r} is unknown: use {', '.join(TRAIN_SITES)}")
        for name in ("expansion", "k", "tokens", "batch_size", "window", "save_every"):
            if getattr(self, name) < 1:
                raise N2GError(f"--{name.replace('_', '-')} must be at least 1")


class _Stop(Exception):
    pass


class _CutModel(nn.Module):
    """Looks like a Hugging Face model to sparsify; its forward ends after `stop_at` ran."""

    def __init__(self, model: nn.Module, stop_at: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self._stop_at = [stop_at]  # a list: not registered as a second submodule

    @property
    def base_model(self) -> nn.Module:
        return self.inner.base_model  # type: ignore[return-value]

    @property
    def config(self) -> Any:
        return self.inner.config

    @property
    def device(self) -> torch.device:
        return next(self.inner.parameters()).device

    @property
    def dummy_inputs(self) -> Any:
        return self.inner.dummy_inputs

    def forward(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> None:
        def stop(*_: Any) -> None:
            raise _Stop

        # Registered now, i.e. after sparsify's own hook on the same module: it runs second.
        handle = self._stop_at[0].register_forward_hook(stop)
        try:
            self.inner(input_ids=input_ids, use_cache=False, **kwargs)
        except _Stop:
            pass
        finally:
            handle.remove()


def layers_path(lm: LoadedModel) -> str:
    """The layer list's module path inside the base model (`layers`, `h`, `decoder.layers`)."""
    target = lm.layer_modules[0]
    for name, module in lm.model.base_model.named_modules():  # type: ignore[union-attr,operator]
        if module is target:
            return str(name).rsplit(".", 1)[0]
    raise N2GError(f"cannot locate the layers of {lm.spec} for sparsify")


def collect_windows(windows: Iterable[Any], spec: TrainSpec) -> tuple[list[list[int]],
                                                                        list[list[int]]]:
    """Full-length windows: enough for `spec.tokens` training tokens, then the held-out ones."""
    n_train = max(spec.batch_size, -(-spec.tokens // spec.window))
    train: list[list[int]] = []
    held: list[list[int]] = []
    for w in windows:
        if len(w.token_ids) != spec.window:
            continue  # a document's short tail: sparsify batches need equal lengths
        (train if len(train) < n_train else held).append(list(w.token_ids))
        if len(held) >= spec.eval_windows:
            break
    if len(train) < n_train or not held:
        have = len(train) + len(held)
        raise N2GError(
            f"the corpus has only {have} full windows of {spec.window} tokens; training on "
            f"{spec.tokens} tokens needs {n_train} plus held-out ones: lower --tokens or "
            "--window, or use a larger --corpus"
        )
    return train, held


def _check_resume(out: Path, spec: TrainSpec, model: str, overwrite: bool) -> None:
    report = out / REPORT
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / "state.pt").is_file() and not report.is_file():
        raise N2GError(f"--out {out} exists and is not an n2g train-sae checkpoint: choose "
                       "another folder")
    if overwrite:
        import shutil

        shutil.rmtree(out)
        return
    if report.is_file():
        old = json.loads(report.read_text(encoding="utf-8"))
        want = {"model": model, **asdict(spec)}
        diff = sorted(k for k in want if old.get("spec", {}).get(k) != want[k])
        if diff:
            raise N2GError(f"{out} holds training with other settings (differs in: "
                           f"{', '.join(diff)}): pass --overwrite, or choose another --out")


@torch.inference_mode()
def evaluate(lm: LoadedModel, sae: Sae, held: list[list[int]],
             batch_size: int = 8) -> dict[str, float]:
    """FVU on held-out windows and the share of latents that never fired on them."""
    reads, writes = sae.info.reads, sae.info.writes
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    err = 0.0
    ys: list[torch.Tensor] = []
    for start in range(0, len(held), batch_size):
        ids = torch.tensor(held[start : start + batch_size])
        acts = site_activations(lm, ids, [reads, writes])
        x = acts[reads].flatten(0, 1).float().cpu()
        y = acts[writes].flatten(0, 1).float().cpu()
        latents = sae.encode(x)
        fired |= (latents > 0).any(0)
        err += float((y - sae.decode(latents, x)).pow(2).sum())
        ys.append(y)
    y_all = torch.cat(ys)
    total = float((y_all - y_all.mean(0)).pow(2).sum())
    return {"fvu": err / total if total > 0 else float("nan"),
            "dead_share": float(1 - fired.float().mean()),
            "eval_tokens": int(y_all.shape[0])}


@contextlib.contextmanager
def _tqdm_disabled(disable: bool) -> Iterator[None]:
    """Silence sparsify's progress bar (its Trainer builds a tqdm with no `disable` option)."""
    import sparsify.trainer as st

    old = st.tqdm

    def silent(*args: Any, **kwargs: Any) -> Any:
        return old(*args, **{**kwargs, "disable": True})  # sparsify passes its own `disable`

    if disable:
        st.tqdm = silent
    try:
        yield
    finally:
        st.tqdm = old


def train_sae(lm: LoadedModel, windows: Iterable[Any], out: Path, spec: TrainSpec, *,
              model_spec: str, corpus: str, overwrite: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one coder into `out` (a sparsify checkpoint folder) and report on it."""
    spec.validate()
    lm.check_neuron(spec.layer)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # sparsify prints on import
            from datasets import Dataset
            from sparsify import SaeConfig, TrainConfig, Trainer
    except ImportError:
        raise N2GError("training needs sparsify: pip install 'neuron2graph[sae]'") from None
    out = out.expanduser().resolve()
    _check_resume(out, spec, model_spec, overwrite)
    train, held = collect_windows(windows, spec)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / REPORT, {"spec": {"model": model_spec, **asdict(spec)},
                                     "corpus": corpus, "status": "training"})
    hookpoint = sparsify_hookpoint(layers_path(lm), spec.layer, spec.site)
    stop_at = lm.model.base_model.get_submodule(hookpoint)  # type: ignore[union-attr,operator]
    cut = _CutModel(lm.model, stop_at)
    dataset = Dataset.from_dict({"input_ids": train}).with_format("torch")
    cfg = TrainConfig(
        SaeConfig(expansion_factor=spec.expansion, k=spec.k, transcode=spec.site == "transcoder"),
        batch_size=spec.batch_size, hookpoints=[hookpoint], log_to_wandb=False,
        save_dir=str(out.parent), run_name=out.name, save_every=spec.save_every,
        init_seeds=[spec.seed], lr=spec.lr,
    )
    torch.manual_seed(spec.seed)
    with contextlib.redirect_stdout(sys.stderr):  # sparsify prints; keep stdout for --json
        trainer = Trainer(cfg, dataset, cut)  # type: ignore[arg-type]
        resumed_at = 0
        if (out / "state.pt").is_file():
            trainer.load_state(str(out))
            resumed_at = int(trainer.global_step)
        start = time.perf_counter()
        if resumed_at < len(train) // spec.batch_size:
            with _tqdm_disabled(not progress):
                trainer.fit()
        elapsed = time.perf_counter() - start
    steps_run = len(train) // spec.batch_size - resumed_at
    trained_tokens = steps_run * spec.batch_size * spec.window
    folder = out / hookpoint
    write_json_atomic(folder / N2G_META, {"model": model_spec, "weights_hash": lm.weights_hash})
    sae = load_sparsify(folder)
    report = {
        "spec": {"model": model_spec, **asdict(spec)},
        "corpus": corpus,
        "status": "complete",
        "hookpoint": hookpoint,
        "checkpoint": str(folder),
        "d_in": sae.info.d_in,
        "latents": sae.d_sae,
        "train_tokens": len(train) * spec.window,
        "steps": len(train) // spec.batch_size,
        "resumed_at_step": resumed_at,
        "seconds": round(elapsed, 2),
        "tokens_per_s": round(trained_tokens / elapsed, 1) if trained_tokens else None,
        **evaluate(lm, sae, held),
    }
    write_json_atomic(out / REPORT, report)
    return report
