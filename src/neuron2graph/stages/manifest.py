"""One manifest per stage in the run directory: `RUN/stages/<name>.json`.

It holds what resuming needs and nothing else:

    {"format": "neuron2graph/stage", "stage": "build", "config": {...result fields...},
     "config_hash": "…", "code_version": "0.1.0", "status": "running" | "complete",
     "done": {"3": "0-7,41,100"}, "failed": {"3:9": "reason"}, "updated": "…"}

`done` lists, per layer, the units whose output files are complete, as compact ranges (a whole
46k-unit model stays a few kB). Only the driver writes it (atomically, after each work item),
never a worker, so it is safe with any executor. A unit counts as done when it is listed here
*and* its file exists (a worker may have written a file the driver never acknowledged: it is
redone, its file is replaced atomically). A manifest whose config differs from the requested one
refuses to resume with one line naming the changed fields; `--overwrite` starts afresh.
The code version is recorded for provenance, not compared (a bug-fix release resumes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.files import write_json_atomic
from neuron2graph.ids import NeuronId
from neuron2graph.stages.config import changed_fields, config_hash
from neuron2graph.store import layout

FORMAT = "neuron2graph/stage"


class ConfigChanged(N2GError):
    """The run holds results of this stage made with another config (one line, names fields)."""


def ranges(values: list[int]) -> str:
    """`[0,1,2,3,7,9,10]` -> `"0-3,7,9-10"` (sorted, distinct)."""
    out: list[str] = []
    items = sorted(set(values))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(out)


def parse_ranges(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


@dataclass
class StageManifest:
    """The resume record of one stage in one run directory (see the module docstring)."""

    path: Path
    stage: str
    config: dict[str, Any]
    code_version: str
    status: str = "running"
    done: dict[int, set[int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """Stage-specific notes (e.g. decode's final-norm description) for readers of the run."""

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def is_done(self, nid: NeuronId) -> bool:
        return nid.neuron in self.done.get(nid.layer, ())

    def n_done(self) -> int:
        return sum(len(v) for v in self.done.values())

    def mark_done(self, layer: int, units: list[int]) -> None:
        self.done.setdefault(layer, set()).update(units)
        for u in units:
            self.failed.pop(f"{layer}:{u}", None)

    def forget(self, layer: int, units: list[int]) -> None:
        """Drop units from `done` (their files went missing: they will be redone)."""
        have = self.done.get(layer)
        if have is not None:
            have.difference_update(units)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "stage": self.stage,
            "config": self.config,
            "config_hash": self.config_hash,
            "code_version": self.code_version,
            "status": self.status,
            "done": {str(k): ranges(sorted(v)) for k, v in sorted(self.done.items()) if v},
            "n_done": self.n_done(),
            "failed": self.failed,
            "extra": self.extra,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def save(self) -> None:
        write_json_atomic(self.path, self.to_json())


def read_manifest(run_dir: Path, stage: str) -> StageManifest | None:
    """The stage's manifest, None when absent; a corrupt one is an N2GError naming the fix."""
    path = layout.stage_manifest_file(run_dir, stage)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError
        return StageManifest(
            path=path, stage=str(doc["stage"]), config=dict(doc["config"]),
            code_version=str(doc.get("code_version", "")), status=str(doc.get("status")),
            done={int(k): set(parse_ranges(str(v))) for k, v in doc.get("done", {}).items()},
            failed={str(k): str(v) for k, v in (doc.get("failed") or {}).items()},
            extra=dict(doc.get("extra") or {}),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise N2GError(
            f"{path} is corrupt: pass --overwrite to redo the {stage} stage"
        ) from None


def open_manifest(
    run_dir: Path, stage: str, config: dict[str, Any], *, overwrite: bool = False
) -> StageManifest:
    """Resume the stage's manifest, or start a new one (none yet, or `overwrite`).

    Raises `ConfigChanged` when the run holds results made with another config and `overwrite`
    is False.
    """
    from neuron2graph import __version__

    old = None if overwrite else read_manifest(run_dir, stage)
    if old is not None:
        if old.config != config:
            changes = changed_fields(old.config, config)
            shown = "; ".join(changes[:3]) + (f" and {len(changes) - 3} more"
                                              if len(changes) > 3 else "")
            raise ConfigChanged(
                f"{run_dir} holds {stage} results made with another config ({shown}): re-run "
                "with the same options to resume, or pass --overwrite to redo them"
            )
        old.code_version = __version__
        return old
    path = layout.stage_manifest_file(run_dir, stage)
    return StageManifest(path=path, stage=stage, config=config, code_version=__version__)


__all__ = [
    "ConfigChanged",
    "StageManifest",
    "open_manifest",
    "parse_ranges",
    "ranges",
    "read_manifest",
]
