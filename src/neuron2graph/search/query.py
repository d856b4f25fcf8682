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
    keys = [tok.strip().lower() if fold else tok for _, tok in terms]

    # Drive the query from the rarest term (a capped count over the index), and check every other
    # term with a primary-key lookup per candidate graph: the work is proportional to the rarest
    # term's graphs, not to the sum over all terms (2-5x faster than a UNION/GROUP BY plan).
    def count(i: int) -> int:
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM graph_tokens WHERE {_ROLE_SQL[terms[i][0]]} "
        return int(conn.execute(sql + f"AND {col} = ? LIMIT 100000)", (keys[i],)).fetchone()[0])

    drive = min(range(len(terms)), key=count) if len(terms) > 1 else 0
    others = [i for i in range(len(terms)) if i != drive]
    unique = terms[drive][0] != "any" and not fold  # one row per graph: no GROUP BY needed
    driver = (
        f"SELECT layer, neuron, {'weight' if unique else 'MAX(weight)'} AS w{drive} "
        f"FROM graph_tokens WHERE {_ROLE_SQL[terms[drive][0]]} AND {col} = ?"
        + ("" if unique else " GROUP BY layer, neuron")
    )
    lookups = "".join(
        f", (SELECT MAX(weight) FROM graph_tokens WHERE layer = d.layer AND neuron = d.neuron "
        f"AND {_ROLE_SQL[terms[i][0]]} AND {col} = ?) AS w{i}"
        for i in others
    )
    score = " + ".join(f"c.w{i}" for i in range(len(terms)))
    where = [f"c.w{i} IS NOT NULL" for i in others]
    params: list[Any] = [keys[drive], *(keys[i] for i in others)]
    if min_components is not None:
        where.append("s.n_components >= ?")
        params.append(min_components)
    params.append(limit)
    sql = f"""
        WITH d AS ({driver}), c AS (SELECT d.*{lookups} FROM d)
        SELECT c.layer, c.neuron, {score} AS score,
               ({score}) / MAX(s.sum_activating + s.sum_important, 1e-9) AS specificity,
               s.n_components
        FROM c JOIN graph_stats s USING (layer, neuron)
        WHERE {" AND ".join(where) or "1"}
        ORDER BY score DESC, specificity DESC, c.layer, c.neuron
        LIMIT ?
    """
    out: list[dict[str, Any]] = []
    for layer, neuron, score_, spec, n_comp in conn.execute(sql, params).fetchall():
        matched = []
        for (role, _tok), key in zip(terms, keys, strict=True):
            # which token matched (any role / folded): the best-weighted row, as in the score
            row = conn.execute(
                f"SELECT role, token, MAX(weight) FROM graph_tokens WHERE layer = ? AND "
                f"neuron = ? AND {_ROLE_SQL[role]} AND {col} = ?",
                (layer, neuron, key),
            ).fetchone()
            matched.append(
                {"clause": role, "role": row[0], "token": row[1], "weight": round(row[2], 6)}
            )
        out.append(
            {
                "id": f"{layer}:{neuron}",
                "layer": layer,
                "neuron": neuron,
                "score": round(score_, 6),
                "specificity": round(min(spec, 1.0), 6),
                "n_components": n_comp,
                "matched": matched,
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
