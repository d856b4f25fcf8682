"""The explanation/score part of `n2g report` (markdown, --json, --html), read from the files.

Why a module of its own: `n2g report` and the static site show every scored unit of the run
(RUN/explain/scores/*.json), not only the units of the last `n2g score` (RUN/explain/table.md),
and they must not import torch (the web layer reads this).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuron2graph.explain import storage


def explanation_report(run_dir: str | Path) -> dict[str, Any] | None:
    """Per layer: explanations by explainer and status, and the score table over every scored
    unit (None when the run holds neither)."""
    from neuron2graph.explain.scoring import layer_table, markdown

    run_dir = Path(run_dir)
    explainers: dict[str, dict[str, dict[str, int]]] = {}
    for name in storage.explainers_done(run_dir):
        for nid in storage.unit_files(storage.explanations_dir(run_dir, name)):
            data = storage.read_json(storage.explanation_file(run_dir, name, nid))
            status = str(data.get("status")) if isinstance(data, dict) else "unreadable"
            cell = explainers.setdefault(name, {}).setdefault(str(nid.layer), {})
            cell[status] = cell.get(status, 0) + 1
    rows = []
    for nid in storage.unit_files(storage.scores_dir(run_dir)):
        row = storage.read_json(storage.scores_file(run_dir, nid))
        if isinstance(row, dict) and "methods" in row:
            rows.append(row)
    if not explainers and not rows:
        return None
    table = layer_table(rows)
    failed: dict[str, int] = {}
    for row in rows:
        for k, v in row.get("failed", {}).items():
            failed[k] = failed.get(k, 0) + v
    return {"explainers": explainers, "scored_units": len(rows), "failed_calls": failed,
            "layers": {str(k): v for k, v in sorted(table.items())},
            "markdown": markdown(table) if rows else ""}


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: explanation counts per explainer and layer, then the table."""
    lines = ["## Explanations and scores", "",
             "| explainer | layer | explanations (by status) |", "|---|---|---|"]
    for name, layers in sorted(report["explainers"].items()):
        for layer, counts in sorted(layers.items(), key=lambda kv: int(kv[0])):
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            lines.append(f"| {name} | {layer} | {shown} |")
    lines += ["", f"{report['scored_units']} units scored; failed calls: "
              f"{report['failed_calls'] or 'none'}"]
    if report["markdown"]:
        lines.append(report["markdown"])
    return "\n".join(lines) + "\n"


__all__ = ["explanation_report", "render_markdown"]
