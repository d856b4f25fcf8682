"""Search: "neurons that fire on ` except` after ` all`", answered from the index in SQL.

A query is a list of *terms*, each a token that must be present in a role:

- ``activating=[...]``: the token is an activating token of the graph;
- ``important=[...]``: the token is an important context token;
- ``any=[...]``: the token is present in either role.

Terms combine with AND. Matching is exact on the token piece (``" except"`` with its leading space
is not ``"except"``) unless ``fold=True``, which compares stripped, lower-cased tokens (the
``norm`` column).

Score: the sum over terms of the matched weight, where a term's weight is the activation of the
matched activating token or the importance of the matched context token (the higher of the two
for an ``any`` term, the highest matching token when folding). So a neuron that fires strongly on
``" except"`` outranks one that fires weakly on it. Ties are broken by *specificity*, the share of
the graph's total token weight that the matched terms cover (a graph about little else than the
query ranks first), then by neuron id.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.search.index import ACTIVATING, IMPORTANT

_ROLE_SQL = {
    ACTIVATING: "role = 'activating'",
    IMPORTANT: "role = 'important'",
    "any": "role IN ('activating', 'important')",
}


def _terms(
    activating: Iterable[str], important: Iterable[str], any_: Iterable[str]
) -> list[tuple[str, str]]:
    out: dict[tuple[str, str], None] = {}
    for role, tokens in ((ACTIVATING, activating), (IMPORTANT, important), ("any", any_)):
        for tok in tokens:
            out[(role, tok)] = None
    return list(out)


def search_neurons(
    conn: sqlite3.Connection,
    activating: Iterable[str] = (),
    important: Iterable[str] = (),
    any: Iterable[str] = (),  # the CLI flag's name
    *,
    limit: int = 50,
    fold: bool = False,
    min_components: int | None = None,
) -> list[dict[str, Any]]:
    """Neurons whose graphs contain every term, best match first (see the module docstring).

    Returns JSON-ready dicts: ``layer``, ``neuron``, ``id`` ("L:N"), ``score``, ``specificity``,
    ``n_components`` and ``matched`` (one ``{"clause", "role", "token", "weight"}`` per term).
    `min_components` keeps only graphs with at least that many behaviours.
    """
    terms = _terms(activating, important, any)
    if not terms:
        raise N2GError("no search clause given: pass --activating, --important or --any TOKEN")
    if limit < 1:
        raise N2GError(f"--limit must be at least 1, got {limit}")
    col = "norm" if fold else "token"
    parts: list[str] = []
    params: list[Any] = []
    for i, (role, tok) in enumerate(terms):
        # One row per graph and term: the best-weighted matching token (SQLite takes the bare
        # columns role/token from the row holding MAX(weight)). Uses the (role, token|norm) index.
        parts.append(
            f"SELECT layer, neuron, {i} AS term, role, token, MAX(weight) AS w "
            f"FROM graph_tokens WHERE {_ROLE_SQL[role]} AND {col} = ? GROUP BY layer, neuron"
        )
        params.append(tok.strip().lower() if fold else tok)
    having = "HAVING COUNT(*) = ?"
    params.append(len(terms))
    stats_filter = ""
    if min_components is not None:
        stats_filter = "WHERE s.n_components >= ?"
    sql = f"""
        WITH m AS ({" UNION ALL ".join(parts)}),
        hits AS (
            SELECT layer, neuron, SUM(w) AS score,
                   json_group_array(json_array(term, role, token, w)) AS matched
            FROM m GROUP BY layer, neuron {having}
        )
        SELECT h.layer, h.neuron, h.score,
               h.score / MAX(s.sum_activating + s.sum_important, 1e-9) AS specificity,
               s.n_components, h.matched
        FROM hits h JOIN graph_stats s USING (layer, neuron)
        {stats_filter}
        ORDER BY h.score DESC, specificity DESC, h.layer, h.neuron
        LIMIT ?
    """
    if min_components is not None:
        params.append(min_components)
    params.append(limit)
    out: list[dict[str, Any]] = []
    for layer, neuron, score, spec, n_comp, matched in conn.execute(sql, params):
        items = sorted(json.loads(matched))
        out.append(
            {
                "id": f"{layer}:{neuron}",
                "layer": layer,
                "neuron": neuron,
                "score": round(score, 6),
                "specificity": round(min(spec, 1.0), 6),
                "n_components": n_comp,
                "matched": [
                    {"clause": terms[t][0], "role": role, "token": token, "weight": round(w, 6)}
                    for t, role, token, w in items
                ],
            }
        )
    return out


def neurons_by_components(
    conn: sqlite3.Connection,
    min_components: int = 2,
    *,
    limit: int = 100,
    layer: int | None = None,
) -> list[dict[str, Any]]:
    """Neurons with at least `min_components` behaviours, most polysemantic first.

    Each dict: ``id``, ``layer``, ``neuron``, ``n_components``, ``behaviours`` (activating tokens of
    each component), ``n_activating``, ``n_important``, ``max_activation``.
    """
    sql = (
        "SELECT layer, neuron, n_components, behaviours, n_activating, n_important, "
        "max_activation FROM graph_stats WHERE n_components >= ?"
    )
    params: list[Any] = [min_components]
    if layer is not None:
        sql += " AND layer = ?"
        params.append(layer)
    sql += " ORDER BY n_components DESC, max_activation DESC, layer, neuron LIMIT ?"
    params.append(limit)
    return [
        {
            "id": f"{lay}:{neu}",
            "layer": lay,
            "neuron": neu,
            "n_components": n,
            "behaviours": json.loads(beh),
            "n_activating": n_act,
            "n_important": n_imp,
            "max_activation": round(mx, 6),
        }
        for lay, neu, n, beh, n_act, n_imp, mx in conn.execute(sql, params)
    ]


__all__ = ["neurons_by_components", "search_neurons"]
