"""`n2g report RUN --html OUT`: the browser's pages as a static site that opens from file://.

Same templates and JS as the server; the neuron list and each page's data are embedded in the
HTML (no fetch, which file:// forbids), and the try-it box predicts in the browser with a JS port
of `NeuronGraph.predict` on space-separated pieces (no tokenizer without a server).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tqdm import tqdm

from neuron2graph.store.atomic import write_text_atomic
from neuron2graph.web.app import STATIC, page_context, templates
from neuron2graph.web.data import RunView
from neuron2graph.web.overview import overview, plot_file


def write_report(run_path: str | Path, out_dir: str | Path, *, all_neurons: bool = False) -> Path:
    """Write index.html, neurons/L_N.html (graphs only, or all) and static/; return index."""
    view = RunView(run_path)
    out = Path(out_dir)
    (out / "neurons").mkdir(parents=True, exist_ok=True)
    if (out / "static").exists():
        shutil.rmtree(out / "static")
    shutil.copytree(STATIC, out / "static")
    rows = view.rows(graphs_only=not all_neurons)
    run = view.summary()
    for row in tqdm(rows, desc="report pages", unit="neuron", disable=None):
        html = templates.get_template("neuron.html").render(
            **page_context(view, row["id"], static=True), run=run)
        write_text_atomic(out / "neurons" / f"{row['layer']}_{row['neuron']}.html", html)
    if plot_file(view.path).is_file():
        shutil.copyfile(plot_file(view.path), out / "eval_f1_by_layer.png")
    index = templates.get_template("index.html").render(
        run=run, static=True, root="", rows_json=json.dumps(rows).replace("</", "<\\/"),
        ov=overview(view, view.rows() if not all_neurons else rows))
    write_text_atomic(out / "index.html", index)
    return out / "index.html"
