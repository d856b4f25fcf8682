"""A run's front page: the run as a whole before the unit list (browser index and static report).

What a reader of a whole-model run wants first: which stages are done (from the stage
manifests, RUN/stages/*.json), how many units each layer has and how many have graphs and
evaluations, the evaluation table and plot when the run was evaluated, and where the graphs are
best and worst (held-out firing F1). Reads files and the SQLite index only; imports no stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuron2graph.store import layout

if TYPE_CHECKING:
    from neuron2graph.web.data import RunView

EXTREMES = 5
"""Units listed as best and as worst."""


def stage_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One row per stage manifest: name, status, units done, units failed, last update."""
    rows: list[dict[str, Any]] = []
    sdir = layout.stages_dir(run_dir)
    for path in sorted(sdir.glob("*.json")) if sdir.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rows.append({"stage": path.stem, "status": "unreadable", "done": None,
                         "failed": None, "updated": None})
            continue
        if not isinstance(doc, dict) or "stage" not in doc:
            continue  # not a stage manifest (e.g. n2g run's plan.json)
        rows.append({"stage": doc["stage"], "status": doc.get("status"),
                     "done": doc.get("n_done"), "failed": len(doc.get("failed") or {}),
                     "updated": doc.get("updated")})
    return rows


def layer_rows(view: RunView) -> list[dict[str, Any]]:
    """Per recorded layer: units, alive units (ever fired), graphs, evaluated units."""
    def counts(sql: str) -> dict[int, int]:
        return {int(layer): int(n) for layer, n in view._query(sql)}

    alive = counts("SELECT layer, COUNT(*) FROM neurons WHERE max_act > 0 GROUP BY layer")
    graphs = (counts("SELECT layer, COUNT(*) FROM graphs GROUP BY layer")
              if view.has_table("graphs") else {})
    evals = (counts("SELECT layer, COUNT(*) FROM eval GROUP BY layer")
             if view.has_table("eval") else {})
    return [{"layer": layer, "units": view.run.n_neurons, "alive": alive.get(layer, 0),
             "graphs": graphs.get(layer, 0), "evaluated": evals.get(layer, 0)}
            for layer in view.run.layers]


def extremes(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The best and worst units by graph F1 (units without an F1 are left out)."""
    scored = sorted((r for r in rows if r.get("f1") is not None),
                    key=lambda r: (-r["f1"], r["layer"], r["neuron"]))
    n = min(EXTREMES, len(scored) // 2) if len(scored) > 1 else len(scored)
    return {"best": scored[:n], "worst": list(reversed(scored[-n:])) if n else []}


def markdown_blocks(text: str) -> list[dict[str, Any]]:
    """Split the evaluation's table.md into paragraphs and pipe tables, so the front page shows
    real HTML tables (header, rows of cells) instead of pre-formatted Markdown."""
    blocks: list[dict[str, Any]] = []
    for chunk in text.strip().split("\n\n"):
        lines = [ln.strip() for ln in chunk.strip().splitlines() if ln.strip()]
        table = [ln for ln in lines if ln.startswith("|") and ln.endswith("|")]
        intro = [ln for ln in lines if ln not in table]
        if intro:
            blocks.append({"kind": "text", "text": " ".join(intro)})
        if len(table) >= 2:
            cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in table]
            body = [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
            blocks.append({"kind": "table", "head": cells[0], "rows": body})
    return blocks


def overview(view: RunView, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the front page shows; `rows` are the unit rows (`view.rows()`)."""
    eval_dir = layout.eval_dir(view.path)
    table = eval_dir / "table.md"
    return {
        "stages": stage_rows(view.path),
        "layers": layer_rows(view),
        "eval_table": (markdown_blocks(table.read_text(encoding="utf-8")) if table.is_file()
                       else None),
        "has_plot": (eval_dir / "f1_by_layer.png").is_file(),
        "explain_table": explain_blocks(view.path),
        **extremes(rows),
    }


def explain_blocks(run_dir: Path) -> list[dict[str, Any]] | None:
    """The explanation/score table per layer over every scored unit (`n2g report`'s), as
    blocks; None when nothing was scored."""
    from neuron2graph.explain.report import explanation_report

    report = explanation_report(run_dir)
    if report is None or not report["markdown"]:
        return None
    return markdown_blocks(report["markdown"])


def plot_file(run_dir: Path) -> Path:
    return layout.eval_dir(run_dir) / "f1_by_layer.png"


__all__ = ["overview", "plot_file", "stage_rows"]
