"""Commands of the browser stage: `show` (draw a graph), `serve` (the browser), `report` (static
site, or the evaluation table). No torch at import time: the web package never needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuron2graph.cli.app import JsonOpt, command, emit_json
from neuron2graph.errors import N2GError


@command("show")
def show(
    run: Annotated[Path | None, typer.Argument(help="Run directory.")] = None,
    neuron: Annotated[str | None, typer.Option("--neuron", "-n", help="Neuron id L:N.")] = None,
    graph: Annotated[Path | None, typer.Option(help="A graph JSON file instead of RUN.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="svg, png or dot.")] = "svg",
    out: Annotated[Path | None, typer.Option(help="Output file (default stdout).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Draw a neuron's graph: the paper's condensed layered view (Graphviz)."""
    from neuron2graph.n2g.graph import NeuronGraph
    from neuron2graph.web.draw import condense, render

    if graph is not None:
        g = NeuronGraph.load(graph)
    elif run is not None and neuron is not None:
        from neuron2graph.web.data import RunView

        view = RunView(run)
        g = view.load_graph(view.parse(neuron))
        if g is None:
            raise N2GError(f"neuron {neuron} has no graph: run `n2g build RUN --neurons {neuron}`")
    else:
        raise N2GError("nothing to draw: pass RUN --neuron L:N, or --graph FILE.json")
    data = render(g, fmt)
    if out is not None:
        from neuron2graph.store.atomic import write_bytes_atomic

        write_bytes_atomic(out, data)
    elif fmt == "png":
        raise N2GError("PNG is binary: pass --out FILE.png")
    elif not json_out:
        typer.echo(data.decode("utf-8"))
    if json_out:
        cg = condense(g)
        emit_json({"neuron": g.neuron, "format": fmt, "out": str(out) if out else None,
                   "nodes": len(cg.nodes), "edges": len(cg.edges),
                   "components": len(cg.components())})


@command("serve")
def serve(
    run: Annotated[Path, typer.Argument(help="Run directory to browse.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[str | None, typer.Option(
        "--model", "--load-model", "-m",
        help="Also show the model's real activations in the try-it box (loads torch).")] = None,
) -> None:
    """Serve the neuron browser and JSON API (/api/..., schema at /openapi.json) over one run."""
    import uvicorn

    from neuron2graph.web.app import create_app

    app = create_app(run, model=model)
    typer.echo(f"neuron browser on http://{host}:{port}/  (API schema: /openapi.json)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@command("report")
def report(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    html: Annotated[Path | None, typer.Option(help="Write a static site here.")] = None,
    all_neurons: Annotated[bool, typer.Option(
        "--all", help="Static pages for every neuron, not only those with graphs.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Print the evaluation table and the explanation/score table per layer, or with --html
    write a static site that opens from disk."""
    if html is not None:
        from neuron2graph.web.static_site import write_report

        index = write_report(run, html, all_neurons=all_neurons)
        if json_out:
            emit_json({"index": str(index)})
        else:
            typer.echo(f"static report: {index}")
            typer.echo(f"browse it live: n2g serve {run}")
        return
    from neuron2graph.evaluate.report import load_results, markdown_table
    from neuron2graph.explain.report import explanation_report, render_markdown

    explain = explanation_report(run)
    try:
        results: dict[str, Any] | None = load_results(run)
    except N2GError:
        if explain is None:
            raise N2GError(f"no evaluation and no scored explanation in {run}: run n2g eval or "
                           "n2g explain and n2g score on it first") from None
        results = None
    if json_out:
        emit_json({**(results or {}), **({"explain": explain} if explain else {})})
        return
    if results is not None:
        typer.echo(markdown_table(results))
    if explain is not None:
        typer.echo(("\n" if results is not None else "") + render_markdown(explain))
