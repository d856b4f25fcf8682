"""What the explain and score stages share on the driver: one set of examples, one migration.

Every explainer (RUN/stages/explain-<explainer>.json) and the scorer (RUN/stages/score.json) has
its own manifest, but they all read the same drawn examples (RUN/explain/examples): scores
compare explanations *on the same contexts*. So the example settings are checked across the
whole family before any manifest opens: settings that differ from those of any explain or score
manifest (or of a run made before manifests, RUN/explain/settings.json) are refused with one
line naming the fields; `--overwrite` then starts the whole explain folder afresh (the examples
of every explainer change, so nothing of the old settings can be kept).

Migration of a run explained before stage manifests: its files carry no manifest, only
explain/settings.json. The first explain or score command with the same example settings adopts
the files of its own explainer (or the score files whose signature matches) into a new manifest,
printing one line; once every explainer folder and the scores have a manifest, settings.json is
removed. Nothing computed is lost, and nothing is recomputed that was computed with the same
settings.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neuron2graph.explain import storage
from neuron2graph.ids import NeuronId
from neuron2graph.stages.config import changed_fields
from neuron2graph.stages.manifest import ConfigChanged, StageManifest, read_manifest
from neuron2graph.store import layout

EXPLAIN_PREFIX = "explain-"
SCORE = "score"


def explain_manifest(explainer: str) -> str:
    return f"{EXPLAIN_PREFIX}{explainer}"


def family(run_dir: Path) -> list[StageManifest]:
    """Every explain-* and score manifest of the run."""
    folder = layout.stages_dir(run_dir)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.stem.startswith(EXPLAIN_PREFIX) or path.stem == SCORE:
            manifest = read_manifest(run_dir, path.stem)
            if manifest is not None:
                out.append(manifest)
    return out


def wipe(run: Any) -> None:
    """Delete the whole explain folder, every explain/score manifest and their derived rows."""
    shutil.rmtree(storage.root(run.path), ignore_errors=True)
    for manifest in family(run.path):
        manifest.path.unlink(missing_ok=True)
    conn = run.db()
    try:
        with conn:
            for table in ("explanations", "explanations_fts", "explanation_scores"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        conn.close()


def check_examples(run: Any, examples: dict[str, Any], *, overwrite: bool) -> bool:
    """Refuse examples drawn with other settings than the family's; with `overwrite`, wipe.

    Returns True when the explain folder was wiped."""
    held: list[tuple[str, dict[str, Any]]] = []
    legacy = storage.legacy_settings(run.path)
    if legacy is not None:
        held.append((f"{storage.ROOT}/{storage.LEGACY_SETTINGS}", legacy))
    for manifest in family(run.path):
        if isinstance(manifest.config.get("examples"), dict):
            held.append((f"stages/{manifest.stage}.json", manifest.config["examples"]))
    differ = [(where, old) for where, old in held if old != examples]
    if not differ:
        return False
    if overwrite:
        wipe(run)
        return True
    where, old = differ[0]
    changes = changed_fields({"examples": old}, {"examples": examples})
    shown = "; ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
    raise ConfigChanged(
        f"{run.path} holds explanations drawn with other settings ({shown}; see {where}): "
        "re-run with the same options, or pass --overwrite to redo them"
    )


def adopt_legacy(run: Any, name: str, config: dict[str, Any], folder: Path,
                 keep: Callable[[NeuronId], bool]) -> None:
    """Adopt the files of a run made before manifests into manifest `name` (see module doc).

    `folder` holds this stage's per-unit files; `keep(nid)` says whether a file holds results of
    `config` (every file for an explainer; a matching signature for scores)."""
    if storage.legacy_settings(run.path) is None or read_manifest(run.path, name) is not None:
        return
    from neuron2graph import __version__

    manifest = StageManifest(path=layout.stage_manifest_file(run.path, name), stage=name,
                             config=config, code_version=__version__, status="partial")
    units = [nid for nid in storage.unit_files(folder) if keep(nid)]
    for nid in units:
        manifest.mark_done(nid.layer, [nid.neuron])
    manifest.save()
    print(f"migrated {folder.relative_to(run.path)}: {len(units)} units kept as done in "
          f"stages/{name}.json (the run predates stage manifests)", file=sys.stderr)
    have = {m.stage for m in family(run.path)}
    scores = storage.unit_files(storage.scores_dir(run.path))
    if all(explain_manifest(e) in have for e in storage.explainers_done(run.path)) and (
            not scores or SCORE in have):
        (storage.root(run.path) / storage.LEGACY_SETTINGS).unlink(missing_ok=True)


__all__ = ["EXPLAIN_PREFIX", "SCORE", "adopt_legacy", "check_examples", "explain_manifest",
           "family", "wipe"]
