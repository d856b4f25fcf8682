"""The neuron browser: HTML pages and a JSON API over one run directory (FastAPI, no torch).

Only the run given at start-up is served; neuron ids are parsed and range-checked before any file
is touched, static assets come from the package's own folder, so no URL can reach another path.
Every user error becomes a JSON 4xx (`{"detail": ...}`): 404 for what does not exist
(`NotFoundError`), 400 for bad input (an unknown `sort`), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel

from neuron2graph.errors import N2GError, NotFoundError
from neuron2graph.web.data import RunView
from neuron2graph.web.overview import overview, plot_file

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                        autoescape=select_autoescape(["html"]))
templates.filters["zip"] = zip


class RunInfo(BaseModel):
    path: str
    model: str
    layers: list[int]
    n_neurons: int
    tokens: int | None = None
    n_graphs: int
    has_eval: bool
    has_decode: bool


class NeuronRow(BaseModel):
    id: str
    layer: int
    neuron: int
    max_act: float
    density: float
    n_nodes: int | None = None
    f1: float | None = None
    n_components: int | None = None


class NeuronList(BaseModel):
    total: int
    offset: int
    limit: int
    rows: list[NeuronRow]


class PredictIn(BaseModel):
    text: str


class PredictOut(BaseModel):
    tokens: list[str]
    pred: list[float]
    real: list[float] | None = None


def graph_payload(view: RunView, nid_text: str) -> dict[str, Any]:
    """SVG markup + hover table + trie JSON for a neuron page (also used by the static report)."""
    from neuron2graph.web.draw import condense, render_svg_inline

    nid = view.parse(nid_text)
    graph = view.load_graph(nid)
    if graph is None:
        return {"svg": None, "nodes": {}, "trie": None}
    return {"svg": render_svg_inline(graph), "nodes": condense(graph).node_table(),
            "trie": graph.to_json()}


def page_context(view: RunView, nid_text: str, *, static: bool = False) -> dict[str, Any]:
    nid = view.parse(nid_text)
    data = view.neuron(nid)
    g = graph_payload(view, nid_text)
    page = {"id": data["id"], "stats": data["stats"], "examples": data["examples"],
            "nodes": g["nodes"], "trie": g["trie"], "eval": data["eval"],
            "decode": data["decode"], "similar": data["similar"], "static": static}
    return {"nid": data["id"], "data": data, "svg": g["svg"], "static": static,
            "page_json": json.dumps(page, default=str).replace("</", "<\\/"),
            "root": "../" if static else "/"}


def create_app(run_path: str | Path, *, model: str | None = None) -> FastAPI:
    view = RunView(run_path)
    app = FastAPI(title="neuron2graph browser", version="1",
                  description="Neuron pages and JSON API over one run directory.",
                  docs_url=None, redoc_url=None)  # their UIs load scripts from a CDN
    app.state.view = view
    app.state.model = model
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(N2GError)
    async def _n2g(_req: Request, exc: N2GError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFoundError) else 400  # not found vs bad input
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def _any(_req: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/api/run", response_model=RunInfo)
    def api_run() -> dict[str, Any]:
        return view.summary()

    @app.get("/api/neurons", response_model=NeuronList)
    def api_neurons(layer: int | None = None, sort: str = "max_act", desc: bool = True,
                    q: str = "", graphs: bool = False, limit: int = 100,
                    offset: int = 0) -> dict[str, Any]:
        limit = max(1, min(limit, 1000))
        rows = view.rows(layer=layer, q=q, sort=sort, desc=desc, graphs_only=graphs)
        return {"total": len(rows), "offset": offset, "limit": limit,
                "rows": rows[max(0, offset):max(0, offset) + limit]}

    @app.get("/api/neurons/{nid}")
    def api_neuron(nid: str) -> dict[str, Any]:
        return view.neuron(view.parse(nid))

    @app.get("/api/neurons/{nid}/graph")
    def api_graph(nid: str) -> dict[str, Any]:
        graph = view.load_graph(view.parse(nid))
        if graph is None:
            raise NotFoundError(f"neuron {nid} has no graph: run `n2g build`")
        out: dict[str, Any] = graph.to_json()
        return out

    @app.get("/api/neurons/{nid}/graph.svg")
    def api_graph_svg(nid: str) -> Response:
        svg = graph_payload(view, nid)["svg"]
        if svg is None:
            raise NotFoundError(f"neuron {nid} has no graph: run `n2g build`")
        return Response(svg, media_type="image/svg+xml")

    @app.post("/api/neurons/{nid}/predict", response_model=PredictOut)
    def api_predict(nid: str, body: PredictIn) -> dict[str, Any]:
        parsed = view.parse(nid)
        out = view.predict(parsed, body.text)
        if model is not None:
            from neuron2graph.web.live import real_activations

            out["real"] = real_activations(model, view, parsed, body.text)
        return out

    @app.get("/api/neurons/{nid}/similar")
    def api_similar(nid: str, top: int = 10) -> list[dict[str, Any]]:
        return view.similar(view.parse(nid), top)

    @app.get("/api/search")
    def api_search(activating: str = "", important: str = "", any: str = ""
                   ) -> list[dict[str, Any]]:
        def split(s: str) -> list[str]:
            return [t for t in s.split("|") if t]

        return view.search(split(activating), split(important), split(any))

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return templates.get_template("index.html").render(
            run=view.summary(), static=False, root="/", rows_json="null",
            ov=overview(view, view.rows()))

    @app.get("/eval/f1_by_layer.png")
    def eval_plot() -> FileResponse:
        path = plot_file(view.path)
        if not path.is_file():
            raise NotFoundError("this run has no evaluation plot: run n2g eval first")
        return FileResponse(path, media_type="image/png")

    @app.get("/neurons/{nid}", response_class=HTMLResponse)
    def neuron_page(nid: str) -> str:
        return templates.get_template("neuron.html").render(
            **page_context(view, nid), run=view.summary())

    return app
