"""`n2g search`, `n2g similar` and `n2g reindex`: query the index of a run's graphs.

Each command first brings the index up to date when graphs were written since the last index
(a cheap check: one stat per layer folder), so results always reflect the graphs on disk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from neuron2graph.cli.app import JsonOpt, command, emit_json
from neuron2graph.errors import N2GError

RunArg = Annotated[Path, typer.Argument(help="Run directory (with graphs from n2g build).")]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar on stderr while indexing.")]


@contextmanager
def _index(run_dir: Path, *, progress: bool, force: bool = False) -> Iterator[sqlite3.Connection]:
    """The run's db with an up-to-date search index; errors when the run has no graph at all."""
    from neuron2graph.search import connect, index_run, is_stale, n_indexed
    from neuron2graph.store.run import Run

    run = Run.open(run_dir)
    conn = connect(run.db())
    try:
        if force or is_stale(run, conn=conn):
            report = index_run(run, conn=conn, force=force, progress=progress)
            for failure in report.failed:
                typer.echo(f"warning: skipped unreadable graph {failure}", err=True)
        if n_indexed(conn) == 0:
            raise N2GError(f"{run_dir} has no graphs: build some with `n2g build`")
        yield conn
    finally:
        conn.close()


def _tok(token: str) -> str:
    return json.dumps(token, ensure_ascii=False)


@command("search")
def search_command(
    run: RunArg,
    activating: Annotated[
        list[str] | None,
        typer.Option("--activating", "-a", help="Token the neuron fires on (repeat for more)."),
    ] = None,
    important: Annotated[
        list[str] | None,
        typer.Option("--important", "-i", help="Important context token (repeat for more)."),
    ] = None,
    any_: Annotated[
        list[str] | None,
        typer.Option("--any", help="Token in either role (repeat for more)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Most results to list.")] = 20,
    fold: Annotated[
        bool, typer.Option("--fold", help="Ignore case and surrounding spaces of tokens.")
    ] = False,
    min_components: Annotated[
        int | None,
        typer.Option(help="Keep neurons with at least this many behaviours (alone: list them)."),
    ] = None,
    explanation: Annotated[
        str | None,
        typer.Option("--explanation", "-e",
                     help="Full-text query on the explanations of n2g explain (SQLite FTS5)."),
    ] = None,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Neurons whose graphs hold all the given tokens, ranked by summed activation/importance.

    With --explanation, units whose natural-language explanation matches the query instead.
    """
    from neuron2graph.search import neurons_by_components, search_neurons

    if explanation is not None:
        _search_explanations(run, explanation, limit, as_json)
        return

    acts, imps, anys = activating or [], important or [], any_ or []
    query = {"activating": acts, "important": imps, "any": anys, "fold": fold,
             "min_components": min_components}  # fmt: skip
    with _index(run, progress=progress) as conn:
        if not (acts or imps or anys) and min_components is not None:
            rows = neurons_by_components(conn, min_components, limit=limit)
            if as_json:
                emit_json({"run": str(run), "query": query, "results": rows})
                return
            typer.echo(f"{len(rows)} neurons with >= {min_components} behaviours")
            for r in rows:
                groups = " | ".join(", ".join(_tok(t) for t in g) for g in r["behaviours"])
                typer.echo(f"  {r['id']:>10}  {r['n_components']:>2}  {groups}")
            return
        results = search_neurons(
            conn, acts, imps, anys, limit=limit, fold=fold, min_components=min_components
        )
    if as_json:
        emit_json({"run": str(run), "query": query, "results": results})
        return
    clauses = [f"{role} {_tok(t)}" for role, ts in query.items() if isinstance(ts, list)
               for t in ts]  # fmt: skip
    typer.echo(f"{len(results)} neurons match {' AND '.join(clauses)} (score: summed weights)")
    if results:
        typer.echo(f"  {'neuron':>10}  {'score':>6}  {'spec':>5}  {'beh':>3}  matched")
    for r in results:
        matched = ", ".join(f"{m['role'][0]} {_tok(m['token'])} {m['weight']:.2f}"
                            for m in r["matched"])  # fmt: skip
        typer.echo(
            f"  {r['id']:>10}  {r['score']:6.3f}  {r['specificity']:5.2f}  "
            f"{r['n_components']:>3}  {matched}"
        )


def _search_explanations(run_dir: Path, query: str, limit: int, as_json: bool) -> None:
    from neuron2graph.explain.storage import search_explanations
    from neuron2graph.store.run import Run

    conn = Run.open(run_dir).db()
    try:
        rows = search_explanations(conn, query, limit)
    finally:
        conn.close()
    if as_json:
        emit_json({"run": str(run_dir), "query": {"explanation": query}, "results": rows})
        return
    typer.echo(f"{len(rows)} explanations match {query!r}")
    for r in rows:
        typer.echo(f"  {r['unit']:>10}  {r['explainer']:<8}  {r['text']}")


def _shared(items: list[dict[str, str]], k: int = 6) -> str:
    text = ", ".join(f"{s['role'][0]} {_tok(s['token'])}" for s in items[:k])
    return text + (f", +{len(items) - k}" if len(items) > k else "")


@command("similar")
def similar_command(
    run: RunArg,
    neuron: Annotated[
        str | None, typer.Option("--neuron", "-n", help="Neuron L:N to find relatives of.")
    ] = None,
    top: Annotated[int, typer.Option(help="Most similar neurons to list.")] = 10,
    all_pairs: Annotated[
        bool, typer.Option("--all", help="List every pair of neurons above --threshold.")
    ] = False,
    threshold: Annotated[float, typer.Option(help="With --all: least similarity.")] = 0.9,
    by: Annotated[
        str, typer.Option(help="Rank by similarity, or containment (graphs that hold this one).")
    ] = "similarity",
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Neurons with similar graphs: weighted Jaccard over activating and important tokens."""
    from neuron2graph.search import similar_neurons, similar_pairs

    if (neuron is None) == (not all_pairs):
        raise N2GError("pass either --neuron L:N or --all (with --threshold)")
    with _index(run, progress=progress) as conn:
        if all_pairs:
            pairs = similar_pairs(conn, threshold, progress=progress)
        else:
            assert neuron is not None
            results = similar_neurons(conn, neuron, top, by=by)
    if all_pairs:
        if as_json:
            emit_json({"run": str(run), "threshold": threshold, "pairs": pairs})
            return
        typer.echo(f"{len(pairs)} pairs with similarity >= {threshold}")
        for p in pairs:
            typer.echo(
                f"  {p['a']:>10} {p['b']:>10}  {p['similarity']:.3f}  official "
                f"{p['official']:.2f}  {p['relation'] or '':<8}  {_shared(p['shared'])}"
            )
        return
    if as_json:
        emit_json({"run": str(run), "neuron": neuron, "by": by, "results": results})
        return
    typer.echo(f"{len(results)} neurons sharing tokens with {neuron} (relation: of {neuron} to it)")
    if results:
        typer.echo(f"  {'neuron':>10}  {'sim':>5}  {'offic':>5}  {'cont':>5}  relation  shared")
    for r in results:
        typer.echo(
            f"  {r['id']:>10}  {r['similarity']:5.3f}  {r['official']:5.2f}  "
            f"{r['containment']:5.2f}  {r['relation'] or '':<8}  {_shared(r['shared'])}"
        )


@command("reindex")
def reindex_command(
    run: RunArg,
    force: Annotated[
        bool, typer.Option("--force", help="Re-read every graph, not only new or changed ones.")
    ] = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the run's SQLite index from its files (neurons, graphs, eval, decode,
    explanations and their scores, search).

    The index is a view derived from the files the stages write: delete RUN/index.sqlite and
    this command rebuilds it. --force also re-reads graphs the search index already holds.
    """
    from neuron2graph.search import index_run, n_indexed
    from neuron2graph.search.index import connect
    from neuron2graph.stages.reindex import reindex
    from neuron2graph.store.run import Run

    tables = reindex(run, only=["neurons", "graphs", "eval", "decode", "explanations",
                                 "explanation_scores"])
    r = Run.open(run)
    conn = connect(r.db())
    try:
        report = index_run(r, conn=conn, force=force, progress=progress)
        total = n_indexed(conn)
    finally:
        conn.close()
    for failure in report.failed:
        typer.echo(f"warning: skipped unreadable graph {failure}", err=True)
    n_expl = int(tables.get("explanations", 0))
    if total == 0 and n_expl == 0:
        raise N2GError(f"{run} has no graphs: build some with `n2g build`")
    if as_json:
        emit_json({"run": str(run), **report.to_json(), "graphs_indexed": total,
                   "explanations_indexed": n_expl, "tables": tables})
        return
    if n_expl:
        typer.echo(f"indexed {n_expl} explanations")
    typer.echo(
        f"indexed {report.indexed} graphs, {report.unchanged} unchanged, "
        f"{report.removed} removed; {total} graphs in the index"
    )
    typer.echo("tables    " + ", ".join(f"{k} ({v} rows)" for k, v in tables.items()))
