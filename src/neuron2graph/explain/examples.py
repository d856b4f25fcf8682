"""Examples for explaining and scoring a unit, delphi-style (docs/explain.md).

Why a module of its own: every explainer and every scorer — LLM sentences, the N2G graph and the
token/n-gram lookups alike — must see *exactly the same* contexts, so the comparison table means
something. Everything is drawn from what `n2g record` kept (a unit's top windows and the uniform
random sample of windows), seeded by (seed, layer, unit), so a re-run draws the same examples.

- A *context* is `ctx_len` tokens (default 32) cut from a recorded window around its peak token,
  with about three quarters of the context to the left of the peak (the model is causal: what
  makes a unit fire lies to the left).
- *Activating* contexts: the top windows plus every sample window whose max reaches
  `min_act` x a_max. They are sorted by max activation into `n_quantiles` (10) equal-count bins.
- *Test* activating contexts are drawn evenly across the bins (delphi scores across quantiles);
  *train* contexts come from the rest: the `top` strongest, one slice of every bin (`quantiles`),
  or half and half (`mix`).
- *Non-activating* contexts: sample windows whose max stays under `min_act` x a_max, cut at a
  seeded random position. *Hard negatives*: sample windows that contain one of the unit's trigger
  tokens (tokens that fire in the train contexts) without firing, cut around that token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId

TrainMode = Literal["top", "quantiles", "mix"]
TRAIN_MODES = ("top", "quantiles", "mix")


@dataclass(frozen=True)
class ExampleConfig:
    """How examples are drawn; every field is part of the fingerprint of stored results."""

    ctx_len: int = 32
    n_train: int = 20
    n_test: int = 20
    n_negative: int = 20
    n_hard: int = 10
    train: TrainMode = "mix"
    n_quantiles: int = 10
    min_act: float = 0.2
    """A context is activating when its max reaches min_act x a_max (the unit's recorded max)."""
    seed: int = 0

    def check(self) -> None:
        if self.train not in TRAIN_MODES:
            raise N2GError(f"unknown train sampling {self.train!r}: use top, quantiles or mix")
        if self.ctx_len < 2:
            raise N2GError(f"--ctx-len {self.ctx_len} is too short: use at least 2 tokens")
        if not 0 < self.min_act <= 1:
            raise N2GError(f"--min-act {self.min_act} must be in (0, 1]")
        if min(self.n_train, self.n_test) < 1 or min(self.n_negative, self.n_hard) < 0:
            raise N2GError("need at least 1 train and 1 test context (and >= 0 negatives)")


@dataclass
class Context:
    """`ctx_len` tokens of one recorded window with the unit's activation on each token."""

    window: int
    start: int
    token_ids: list[int]
    tokens: list[str]
    acts: list[float]
    """Raw activations (divide by a_max for the normalised ones)."""
    kind: str
    """"activating", "negative" or "hard_negative"."""
    quantile: int = -1
    """Activating contexts: bin 0 (weakest) .. n_quantiles-1 (strongest); -1 otherwise."""

    @property
    def max_act(self) -> float:
        return max(self.acts) if self.acts else 0.0

    @property
    def activating(self) -> bool:
        return self.kind == "activating"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Context:
        return cls(**data)


@dataclass
class UnitExamples:
    """All contexts of one unit: train (for explainers and lookups) and the scoring set."""

    unit: str
    a_max: float
    train: list[Context]
    test: list[Context]
    negative: list[Context]
    hard_negative: list[Context]
    triggers: list[str] = field(default_factory=list)

    @property
    def scoring(self) -> list[Context]:
        """What scorers see: the test activating contexts, then negatives, then hard negatives."""
        return self.test + self.negative + self.hard_negative

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit, "a_max": self.a_max, "triggers": self.triggers,
            **{k: [c.to_json() for c in getattr(self, k)]
               for k in ("train", "test", "negative", "hard_negative")},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnitExamples:
        parts = {k: [Context.from_json(c) for c in data[k]]
                 for k in ("train", "test", "negative", "hard_negative")}
        return cls(unit=data["unit"], a_max=float(data["a_max"]),
                   triggers=list(data.get("triggers", [])), **parts)


def cut(ex: Any, center: int, ctx_len: int, *, left: float = 0.75) -> tuple[int, int]:
    """[start, end) of a `ctx_len` context of `ex` with about `left` of it before `center`."""
    n = len(ex.token_ids)
    if n <= ctx_len:
        start = 1 if getattr(ex, "bos", False) and n > 1 and center > 0 else 0
        return start, n
    start = center - round(left * (ctx_len - 1))
    start = max(1 if getattr(ex, "bos", False) else 0, min(start, n - ctx_len))
    return start, start + ctx_len


def make_context(ex: Any, center: int, ctx_len: int, kind: str, quantile: int = -1) -> Context:
    start, end = cut(ex, center, ctx_len)
    return Context(window=int(ex.window), start=start, token_ids=list(ex.token_ids[start:end]),
                   tokens=list(ex.tokens[start:end]), acts=[float(a) for a in ex.acts[start:end]],
                   kind=kind, quantile=quantile)


def _peak(ex: Any) -> int:
    return int(np.argmax(np.asarray(ex.acts, dtype=np.float64)))


def quantile_bins(values: Sequence[float], n_bins: int) -> list[int]:
    """Equal-count bins by value: bin of each item (0 = weakest). Ties keep input order."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    bins = [0] * len(values)
    for rank, i in enumerate(order):
        bins[i] = min(n_bins - 1, rank * n_bins // max(1, len(values)))
    return bins


def _spread(groups: list[list[int]], n: int) -> list[int]:
    """Take `n` items round-robin over groups (each group already shuffled)."""
    out: list[int] = []
    queues = [list(g) for g in groups]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def draw_examples(run: Any, nid: NeuronId, cfg: ExampleConfig) -> UnitExamples:
    """Draw one unit's train, test, negative and hard-negative contexts (seeded)."""
    cfg.check()
    a_max = float(run.a_max(nid))
    if not np.isfinite(a_max) or a_max <= 0:
        raise N2GError(f"unit {nid} never fires (max activation {a_max}): pick another unit")
    rng = np.random.default_rng([cfg.seed, nid.layer, nid.neuron])
    thr = cfg.min_act * a_max
    top = list(run.top_examples(nid))
    top_windows = {ex.window for ex in top}
    sample = list(run.sample_examples(nid))
    pool = [ex for ex in top if ex.max_act >= thr]
    pool += [ex for ex in sample if ex.window not in top_windows and ex.max_act >= thr]
    if len(pool) < 2:
        raise N2GError(f"unit {nid} has {len(pool)} activating windows (max >= {cfg.min_act} "
                       "a_max): record more text or lower --min-act")
    bins = quantile_bins([ex.max_act for ex in pool], cfg.n_quantiles)
    groups: list[list[int]] = [[] for _ in range(cfg.n_quantiles)]
    for i in rng.permutation(len(pool)):
        groups[bins[int(i)]].append(int(i))
    # Test first, evenly over bins, strongest bins first so a small test set still has the top.
    n_test = min(cfg.n_test, len(pool) - 1)
    test_idx = _spread(groups[::-1], n_test)
    rest = [i for i in range(len(pool)) if i not in set(test_idx)]
    n_train = min(cfg.n_train, len(rest))
    by_act = sorted(rest, key=lambda i: (-pool[i].max_act, pool[i].window))
    rest_groups = [[i for i in g if i not in set(test_idx)] for g in groups]
    if cfg.train == "top":
        train_idx = by_act[:n_train]
    elif cfg.train == "quantiles":
        train_idx = _spread(rest_groups[::-1], n_train)
    else:
        train_idx = by_act[: n_train // 2]
        left = [[i for i in g if i not in set(train_idx)] for g in rest_groups]
        train_idx += _spread(left[::-1], n_train - len(train_idx))

    def ctx(i: int) -> Context:
        return make_context(pool[i], _peak(pool[i]), cfg.ctx_len, "activating", bins[i])

    train = [ctx(i) for i in train_idx]
    test = [ctx(i) for i in test_idx]
    quiet = [ex for ex in sample if ex.window not in top_windows and ex.max_act < thr]
    triggers = trigger_tokens(train, thr)
    negative, hard = _negatives(quiet, triggers, cfg, rng)
    return UnitExamples(unit=str(nid), a_max=a_max, train=train, test=test, negative=negative,
                        hard_negative=hard, triggers=sorted(triggers))


def trigger_tokens(contexts: Sequence[Context], thr: float) -> set[str]:
    """Token pieces on which the unit fires (>= thr) in these contexts."""
    return {t for c in contexts for t, a in zip(c.tokens, c.acts, strict=True) if a >= thr}


def _negatives(quiet: list[Any], triggers: set[str], cfg: ExampleConfig,
               rng: np.random.Generator) -> tuple[list[Context], list[Context]]:
    """Hard negatives first (they are rarer), then plain negatives from the other windows."""
    hard: list[Context] = []
    used: set[int] = set()
    for i in rng.permutation(len(quiet)):
        if len(hard) >= cfg.n_hard:
            break
        ex = quiet[int(i)]
        hits = [p for p, t in enumerate(ex.tokens) if t in triggers and not (p == 0 and ex.bos)]
        if hits:
            pos = hits[int(rng.integers(len(hits)))]
            hard.append(make_context(ex, pos, cfg.ctx_len, "hard_negative"))
            used.add(int(ex.window))
    negative: list[Context] = []
    for i in rng.permutation(len(quiet)):
        if len(negative) >= cfg.n_negative:
            break
        ex = quiet[int(i)]
        if int(ex.window) in used:
            continue
        center = int(rng.integers(len(ex.token_ids))) if ex.token_ids else 0
        negative.append(make_context(ex, center, cfg.ctx_len, "negative"))
    return negative, hard


__all__ = [
    "TRAIN_MODES",
    "Context",
    "ExampleConfig",
    "UnitExamples",
    "cut",
    "draw_examples",
    "make_context",
    "quantile_bins",
    "trigger_tokens",
]
