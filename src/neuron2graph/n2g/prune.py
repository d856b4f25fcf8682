"""Prune: cut an activating example down to the shortest context that still makes the neuron fire.

Paper §3: find the key token (max activation), drop what follows it, then grow the context leftwards
until the key token keeps at least `threshold` of its original activation. We keep up to
`post_context` tokens after the key token (they cannot change the key token's activation in a causal
model, but they may hold more firings).

Why a `PruneSearch` object instead of one function: the search needs model forwards, and the
pipeline
wants to batch the forwards of *every* example of *every* neuron of a layer together. The search
therefore says which prompts it needs next (`pending`), is fed their key-token activations (`feed`),
and repeats until `done`. `prune` drives one search with any activation function (tests, notebooks).

Exact strategy: prefix lengths are scanned shortest first in chunks of `first_chunk` lengths
(1-8, 9-16, 17-24, ...), each chunk one batch (shared by every pending search of the layer). The
first length that meets the threshold is *the* shortest one, with no monotonicity assumption, and
short contexts (the common case) cost few tokens. Chunks used to double (1-8, 9-16, 17-32, 33-64):
a context of 33 tokens then also ran every length up to 64 (~2,100 tokens of candidates instead
of ~860), the largest part of pruning's cost at deep layers; equal chunks cost a few more
batches instead. When no length meets the threshold the full left context is kept and
`threshold_met` is False (never silently).

Official strategy (for the evaluation's comparison row): the official code tries lengths 5, 10, ...
up to 30 tokens and accepts its last try when none meets the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from neuron2graph.errors import N2GError

ActFn = Callable[[Sequence[Sequence[int]]], list[list[float]]]
"""Activations of the studied neuron on each given token sequence, one float per token."""


@dataclass(frozen=True)
class PruneConfig:
    threshold: float = 0.5
    """Keep the shortest context whose key activation is >= threshold x original (paper: 0.5)."""
    keep_firing: float | None = 0.5
    """When the key token fires in the example (a >= keep_firing x a_max), the pruned prompt must
    still make it fire. The paper's 50% rule alone lets an example at 0.6 a_max be pruned to 0.3
    a_max, below the 0.5 firing threshold, so the builder then drops it: measured on SmolLM2, only 1
    of 10 pruned examples of neuron 10:97 still fired (the official code hides this by overshooting
    with its every-5th-length search). None turns the rule off (the paper's exact wording)."""
    post_context: int = 5
    """Tokens kept after the key token."""
    strategy: Literal["exact", "official"] = "exact"
    first_chunk: int = 8
    """Exact strategy: each batch tries this many prefix lengths (1-8, then 9-16, ...)."""
    official_step: int = 5
    official_cap: int = 30


@dataclass
class PruneResult:
    token_ids: list[int]
    """The pruned prompt (BOS kept in front when the example started with it)."""
    key_index: int
    """Position of the key token in the pruned prompt."""
    source_start: int
    """Where the pruned prompt's context starts in the original example (excluding a kept BOS)."""
    original_activation: float
    pruned_activation: float
    threshold_met: bool
    lengths_tried: int
    """Candidate prompts evaluated (each is one forward row)."""


def key_token(acts: Sequence[float]) -> int:
    """Position of the max activation; raises on NaN/inf (a broken model, never a silent answer)."""
    if not acts:
        raise N2GError("empty example: every example needs at least one token")
    if any(not math.isfinite(a) for a in acts):
        raise N2GError("activation is NaN or inf: check the model weights and dtype (try fp32)")
    return max(range(len(acts)), key=lambda i: acts[i])


@dataclass
class PruneSearch:
    """One example's pruning search, driven step by step (see module docstring)."""

    token_ids: list[int]
    acts: list[float]
    config: PruneConfig = field(default_factory=PruneConfig)
    bos_id: int | None = None
    """When the example starts with this id, every candidate keeps it in front (attention sink)."""
    a_max: float | None = None
    """The neuron's max over the corpus, for `PruneConfig.keep_firing` (ignored when None)."""

    def __post_init__(self) -> None:
        if len(self.acts) != len(self.token_ids):
            raise N2GError("activations and tokens differ in length: pass one activation per token")
        self.key = key_token(self.acts)
        self.original = float(self.acts[self.key])
        self.prefix: list[int] = []
        first = 0
        if self.bos_id is not None and self.token_ids and self.token_ids[0] == self.bos_id:
            self.prefix, first = [self.bos_id], 1
        # Context lengths (tokens ending at and including the key), not counting a kept BOS.
        self.max_len = self.key + 1 - first
        if self.max_len <= 0:  # the key token is the BOS itself: nothing to search
            self.max_len = 1
            self.prefix, first = [], 0
        self._first = first
        self.tried = 0
        self._chunk: list[int] = []
        self._next_lo = 1
        self._official_last: int | None = None
        self.chosen: int | None = None
        self.met = False
        self.chosen_act = self.original
        if self.config.strategy not in ("exact", "official"):
            raise N2GError(
                f"unknown pruning strategy {self.config.strategy!r}: use 'exact' or 'official'"
            )
        if self.original <= 0:  # nothing fires: keep the whole context, say so
            self._finish(self.max_len, met=False, act=self.original)

    # ----------------------------------------------------------------- protocol
    @property
    def target(self) -> float:
        """The key activation a candidate must reach (see `PruneConfig.keep_firing`)."""
        target = self.config.threshold * self.original
        keep, a_max = self.config.keep_firing, self.a_max
        if self.config.strategy == "exact" and keep is not None and a_max and a_max > 0:
            firing = keep * a_max
            if self.original >= firing:
                target = max(target, firing)
        return target

    @property
    def done(self) -> bool:
        return self.chosen is not None

    def _candidate(self, length: int) -> list[int]:
        return self.prefix + self.token_ids[self.key + 1 - length : self.key + 1]

    def pending(self) -> list[list[int]]:
        """The candidate prompts to evaluate next (their last token is the key token)."""
        if self.done:
            return []
        if not self._chunk:
            if self.config.strategy == "official":
                step, cap = self.config.official_step, self.config.official_cap
                lengths = list(range(step, min(cap, self.max_len) + 1, step))
                if not lengths or lengths[-1] < min(cap, self.max_len):
                    lengths.append(min(cap, self.max_len))
                self._chunk = lengths
            else:
                lo = self._next_lo
                size = self.config.first_chunk
                hi = min(self.max_len, lo + size - 1)
                self._chunk = list(range(lo, hi + 1))
                self._next_lo = hi + 1
        return [self._candidate(n) for n in self._chunk]

    def feed(self, key_acts: Sequence[float]) -> None:
        """Key-token activations of the prompts returned by the last `pending()`, in order."""
        chunk, self._chunk = self._chunk, []
        if len(key_acts) != len(chunk):
            raise ValueError("feed() needs one activation per pending prompt")
        self.tried += len(chunk)
        target = self.target
        for length, act in zip(chunk, key_acts, strict=True):
            if not math.isfinite(act):
                raise N2GError("activation is NaN or inf: check the model weights and dtype")
            if act >= target:
                self._finish(length, met=True, act=float(act))
                return
        if self.config.strategy == "official":  # accept the last try, as the official code does
            self._finish(chunk[-1], met=False, act=float(key_acts[-1]))
        elif self._next_lo > self.max_len:  # scanned everything: keep the full context, flag it
            self._finish(self.max_len, met=False, act=float(key_acts[-1]))

    def _finish(self, length: int, *, met: bool, act: float) -> None:
        self.chosen, self.met, self.chosen_act = length, met, act

    def result(self) -> PruneResult:
        if self.chosen is None:
            raise RuntimeError("pruning search not finished: call pending()/feed() until done")
        start = self.key + 1 - self.chosen
        end = min(len(self.token_ids), self.key + 1 + self.config.post_context)
        ids = self.prefix + self.token_ids[start:end]
        return PruneResult(
            token_ids=ids,
            key_index=len(self.prefix) + self.chosen - 1,
            source_start=start,
            original_activation=self.original,
            pruned_activation=self.chosen_act,
            threshold_met=self.met,
            lengths_tried=self.tried,
        )


def prune(
    token_ids: Sequence[int],
    acts: Sequence[float],
    act_fn: ActFn,
    config: PruneConfig | None = None,
    *,
    bos_id: int | None = None,
    a_max: float | None = None,
) -> PruneResult:
    """Prune one example, calling `act_fn` once per batch of candidate prompts."""
    search = PruneSearch(
        list(token_ids), [float(a) for a in acts], config or PruneConfig(), bos_id, a_max
    )
    while not search.done:
        batch = search.pending()
        out = act_fn(batch)
        search.feed([row[-1] for row in out])
    return search.result()


def official_prune_tokens(key: int, shortest: int | None, config: PruneConfig | None = None) -> int:
    """Tokens the official pruning forwards for a key token at position `key` (the sum of
    `official_prune_lengths`)."""
    return sum(official_prune_lengths(key, shortest, config))


def official_prune_lengths(key: int, shortest: int | None,
                           config: PruneConfig | None = None) -> list[int]:
    """The context lengths the official pruning forwards for a key token at position `key`.

    It tries context lengths 5, 10, ... (capped at 30 and at the available context) and stops at the
    first that meets the threshold; `shortest` is the exact shortest length found by our search
    (None
    when never met), so the first multiple of 5 at or above it is taken as the official stop (an
    estimate: it assumes activation does not drop again between the two lengths).
    """
    cfg = config or PruneConfig()
    avail = min(cfg.official_cap, key + 1)
    lengths = list(range(cfg.official_step, avail + 1, cfg.official_step)) or [avail]
    tried: list[int] = []
    for n in lengths:
        tried.append(n)
        if shortest is not None and n >= shortest:
            break
    return tried
