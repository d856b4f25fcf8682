"""Read-only views of a run for the browser: listing rows, neuron pages, predictions.

Everything goes through `neuron2graph.store.run.Run`; optional stages (eval, decode, search) are
looked up lazily and simply left out of a page when the run does not hold them. No torch.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError, NotFoundError
from neuron2graph.ids import NeuronId
from neuron2graph.store import layout

SORT_KEYS = ("id", "max_act", "density", "f1", "n_nodes", "n_components")


def finite(obj: Any) -> Any:
    """Replace NaN/inf (e.g. open-ended histogram edges) by None: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def _partner_example(run_path: Any, nid: NeuronId) -> dict[str, Any] | None:
    """The partner's strongest top example, read from its run (None when that run is gone)."""
    from neuron2graph.store.run import Run

    try:
        other = Run.open(Path(str(run_path)))
        top = other.top_examples(nid, 1)
    except (N2GError, OSError, KeyError, ValueError):
        return None
    if not top:
        return None
    ex = top[0]
    peak = max(range(len(ex.acts)), key=lambda i: ex.acts[i])
    return {"context": "".join(ex.tokens[max(0, peak - 8):peak]), "token": ex.tokens[peak],
            "max_act": ex.max_act}


class RunView:
    """A thread-safe facade over one run directory (a fresh SQLite connection per call)."""

    def __init__(self, path: str | Path) -> None:
        from neuron2graph.store.run import Run

        self.run = Run.open(path)
        self.path = self.run.path
        self._lock = threading.Lock()
        self._components: dict[str, int] = {}

    # ------------------------------------------------------------------ ids
    def parse(self, text: str) -> NeuronId:
        """Validate an id from a URL; NotFoundError (-> 404) when malformed or out of range
        (an id that cannot name a unit of this run names no page)."""
        try:
            nid = NeuronId.parse(text)
        except N2GError as exc:
            raise NotFoundError(str(exc)) from None
        if nid.layer not in self.run.layers or not 0 <= nid.neuron < self.run.n_neurons:
            raise NotFoundError(f"neuron {nid} is not in this run")
        return nid

    def _connect(self) -> sqlite3.Connection:
        index = layout.index_file(self.path)
        if not index.is_file():
            raise N2GError(f"{self.path} has no {layout.INDEX}: rebuild it with n2g reindex")
        return sqlite3.connect(f"file:{index}?mode=ro", uri=True)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            return list(conn.execute(sql, args))
        finally:
            conn.close()

    def has_table(self, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
        return bool(self._query(sql, (name,)))

    # -------------------------------------------------------------- listing
    def summary(self) -> dict[str, Any]:
        m = self.run.manifest
        model = m.get("model")
        return {
            "path": self.path.name,
            "model": str(model.get("spec", model) if isinstance(model, dict) else model),
            "layers": self.run.layers,
            "n_neurons": self.run.n_neurons, "tokens": m.get("tokens"),
            "n_graphs": (self._query("SELECT COUNT(*) FROM graphs")[0][0]
                         if self.has_table("graphs") else 0),
            "has_eval": self.has_table("eval"), "has_decode": self.has_table("decode"),
        }

    def n_components(self, nid: str) -> int | None:
        if nid not in self._components:
            graph = self.load_graph(NeuronId.parse(nid))
            if graph is None:
                return None
            from neuron2graph.web.draw import condense

            self._components[nid] = len(condense(graph).components())
        return self._components[nid]

    def rows(self, *, layer: int | None = None, q: str = "", sort: str = "max_act",
             desc: bool = True, graphs_only: bool = False) -> list[dict[str, Any]]:
        where, args = [], []
        if layer is not None:
            where.append("n.layer = ?")
            args.append(layer)
        if graphs_only:
            where.append("g.n_nodes IS NOT NULL")
        f1 = "e.f1_firing" if self.has_table("eval") else "NULL"
        ejoin = "LEFT JOIN eval e USING (layer, neuron)" if self.has_table("eval") else ""
        sql = (f"SELECT n.layer, n.neuron, n.max_act, n.density, g.n_nodes, {f1} "
               f"FROM neurons n LEFT JOIN graphs g USING (layer, neuron) {ejoin} "
               + ("WHERE " + " AND ".join(where) if where else ""))
        out = []
        for lay, neu, mx, dens, nn, f in self._query(sql, tuple(args)):
            nid = f"{lay}:{neu}"
            if q and q not in nid:
                continue
            out.append({"id": nid, "layer": lay, "neuron": neu, "max_act": mx, "density": dens,
                        "n_nodes": nn, "f1": f,
                        "n_components": self.n_components(nid) if nn is not None else None})
        if sort not in SORT_KEYS:
            raise N2GError(f"unknown sort key {sort!r}: use one of {', '.join(SORT_KEYS)}")

        def key(r: dict[str, Any]) -> tuple[Any, ...]:
            if sort == "id":
                return (r["layer"], r["neuron"])
            v = r[sort]
            return (v is not None, v if v is not None else 0)

        out.sort(key=key, reverse=desc)
        return out

    # --------------------------------------------------------------- neuron
    def load_graph(self, nid: NeuronId) -> Any:
        from neuron2graph.n2g.graph_io import load_graph

        return load_graph(self.path, nid)

    def neuron(self, nid: NeuronId, *, k: int | None = None) -> dict[str, Any]:
        """Stats, every recorded top example (the builder numbers its examples the same way)."""
        stats = self.run.neuron_stats(nid)
        graph = self.load_graph(nid)
        a_max = stats["max_act"] or 1.0
        examples = []
        for ex in self.run.top_examples(nid, k):
            pred = graph.predict(ex.tokens) if graph is not None else None
            examples.append({
                "window": ex.window, "tokens": ex.tokens,
                "acts": [round(a / a_max, 4) for a in ex.acts],
                "pred": None if pred is None else [round(p, 4) for p in pred],
                "max_act": ex.max_act,
            })
        return finite({"id": str(nid), "stats": stats, "has_graph": graph is not None,
                "unit": self.unit(nid),
                "examples": examples, "eval": self._row("eval", nid),
                "decode": self._decode(nid), "similar": self.similar(nid),
                "explain": self._explain(nid), "matches": self.matches(nid)})

    def unit(self, nid: NeuronId) -> dict[str, str]:
        """What the unit is: its noun and its id with the run's site prefix (`sae/0:12`)."""
        noun = "neuron" if self.run.units == "neurons" else "latent"
        return {"noun": noun, "qualified": f"{self.run.unit_site}/{nid}",
                "source": str(self.run.manifest.get("unit_source") or self.run.units)}

    def matches(self, nid: NeuronId) -> list[dict[str, Any]]:
        """The unit's match in every alignment stored in RUN/align (`n2g align RUN_A RUN_B`):
        the partner's id, the decoder cosine, the rank of the pair in that matching, a link
        when the partner is in this run, and the partner's top example when its run is here."""
        import json

        folder = layout.align_dir(self.path)
        out: list[dict[str, Any]] = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                continue  # a broken matching hides itself; the page stays up
            me, other = doc.get("self") or {}, doc.get("other") or {}
            if not isinstance(doc, dict) or me.get("layer") != nid.layer:
                continue
            pairs = doc.get("pairs") or []
            rank = next((i for i, p in enumerate(pairs) if p.get("unit") == nid.neuron), None)
            if rank is None:
                continue
            pair = pairs[rank]
            partner = NeuronId(int(other["layer"]), int(pair["match"]))
            same = Path(str(other.get("run", ""))) == self.path.resolve()
            out.append({
                "file": path.name, "run": other.get("name"), "run_path": other.get("run"),
                "id": str(partner), "qualified": f"{other.get('site', 'sae')}/{partner}",
                "cosine": pair.get("cosine"), "rank": rank + 1, "pairs": len(pairs),
                "mean_cosine": (doc.get("summary") or {}).get("mean_cosine"),
                "link": same,
                "example": None if same else _partner_example(other.get("run"), partner),
            })
        return out

    def _row(self, table: str, nid: NeuronId) -> dict[str, Any] | None:
        if not self.has_table(table):
            return None
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(f"SELECT * FROM {table} WHERE layer=? AND neuron=?",
                               (nid.layer, nid.neuron)).fetchone()
            return dict(row) if row else None
        finally:
            conn.close()

    def _explain(self, nid: NeuronId) -> dict[str, Any] | None:
        """Explanations and headline scores from RUN/explain (files; no model, no torch)."""
        from neuron2graph.explain import storage
        from neuron2graph.explain.scoring import KEYS

        expls = []
        for name in storage.explainers_done(self.path):
            data = storage.read_json(storage.explanation_file(self.path, name, nid))
            if isinstance(data, dict):
                expls.append({k: data.get(k) for k in ("explainer", "text", "status", "model")})
        scores = storage.read_json(storage.scores_file(self.path, nid))
        table = []
        if isinstance(scores, dict):
            for method, entry in sorted(scores.get("methods", {}).items()):
                table.append({"method": method, "values": [
                    (entry.get(scorer) or {}).get(metric) for scorer, metric in KEYS]})
        if not expls and not table:
            return None
        return {"explanations": expls, "columns": [f"{s} {m}" for s, m in KEYS],
                "scores": table,
                "counts": scores.get("examples") if isinstance(scores, dict) else None}

    def _decode(self, nid: NeuronId) -> Any:
        """Decoded tokens, None when the run was never decoded (the decode stage is optional)."""
        from neuron2graph.decode.table import decoded_tokens

        return decoded_tokens(layout.index_file(self.path), nid.layer, nid.neuron) or None

    def _search_conn(self) -> sqlite3.Connection:
        """The run's db with an up-to-date search index (built on first use, as `n2g search`)."""
        from neuron2graph.search import connect, index_run, is_stale

        conn = connect(self.run.db())
        with self._lock:
            if is_stale(self.run, conn=conn):
                index_run(self.run, conn=conn, progress=False)
        return conn

    def similar(self, nid: NeuronId, top: int = 10) -> list[dict[str, Any]]:
        """Units with overlapping graphs; empty when this unit has no graph (nothing to match)."""
        from neuron2graph.search import similar_neurons

        if not layout.graph_file(self.path, nid).is_file():
            return []
        if top < 1:
            raise N2GError(f"top must be at least 1, got {top}")
        conn = self._search_conn()
        try:
            return similar_neurons(conn, str(nid), top)
        finally:
            conn.close()

    def search(self, activating: list[str], important: list[str], any_: list[str]
               ) -> list[dict[str, Any]]:
        try:
            from neuron2graph.search import search_neurons
        except ImportError:
            raise N2GError("this neuron2graph has no search stage") from None
        conn = self._search_conn()
        try:
            return search_neurons(conn, activating=activating, important=important, any=any_)
        finally:
            conn.close()

    def tokenize(self, text: str) -> list[str]:
        with self._lock:  # tokenizers are not guaranteed thread-safe
            tok = self.run.tokenizer()
            ids = tok.encode(text, add_special_tokens=False)
            return self.run.pieces(ids)

    def predict(self, nid: NeuronId, text: str) -> dict[str, Any]:
        graph = self.load_graph(nid)
        if graph is None:
            raise NotFoundError(f"neuron {nid} has no graph: run `n2g build RUN --neurons {nid}`")
        tokens = self.tokenize(text[:5000])
        return {"tokens": tokens, "pred": [round(p, 4) for p in graph.predict(tokens)]}
