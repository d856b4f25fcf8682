"""Similar neurons: weighted Jaccard over role-tagged token weights, with subset relations.

A graph becomes a sparse vector whose dimensions are ``(role, token)``: an activating token and
the same token as important context are *different* dimensions. The value of a dimension is the
token's weight in the index (activation for activating tokens, importance for context tokens)
times a role weight (default: activating 1.0, important 0.5, because what a neuron fires on
defines it more than the context it needs). For graphs A and B::

    similarity(A, B)  = sum_d min(A_d, B_d) / sum_d max(A_d, B_d)      (weighted Jaccard, in [0, 1])
    containment(A, B) = sum_d min(A_d, B_d) / sum_d A_d                (how much of A is inside B)
    relation          = "equal" | "subset" (A's dims ⊆ B's) | "superset" | None

docs/search.md explains why this beats the official ``|A∩B| / max(|A|, |B|)``, which every result
also carries as ``official`` for comparison.

Everything is computed from the index (`search.index`), never from graph files: ``sum_d max`` is
``|A| + |B| - sum_d min``, so only the shared dimensions are ever visited.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import defaultdict
from typing import Any

from neuron2graph.errors import N2GError
from neuron2graph.ids import NeuronId
from neuron2graph.search.index import ACTIVATING

ROLE_WEIGHTS: dict[str, float] = {"activating": 1.0, "important": 0.5}


def _relation(n_shared: int, n_a: int, n_b: int) -> str | None:
    if n_shared == n_a == n_b:
        return "equal"
    if n_shared == n_a:
        return "subset"
    if n_shared == n_b:
        return "superset"
    return None


def _token_set(conn: sqlite3.Connection, layer: int, neuron: int) -> set[str]:
    rows = conn.execute(
        "SELECT DISTINCT token FROM graph_tokens WHERE layer = ? AND neuron = ?", (layer, neuron)
    )
    return {t for (t,) in rows}


def _official(a: set[str], b: set[str]) -> float:
    """The official N2G similarity: |A ∩ B| / max(|A|, |B|) on token sets, roles merged."""
    return round(len(a & b) / max(len(a), len(b), 1), 6)


def _rw(role_weights: dict[str, float] | None) -> tuple[float, float]:
    rw = {**ROLE_WEIGHTS, **(role_weights or {})}
    if min(rw.values()) < 0:
        raise N2GError("role weights must be non-negative")
    return rw["activating"], rw["important"]


def similar_neurons(
    conn: sqlite3.Connection,
    nid: NeuronId | str,
    top: int = 10,
    *,
    by: str = "similarity",
    role_weights: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The `top` neurons most similar to `nid` (sharing at least one role-tagged token).

    `by="similarity"` ranks by weighted Jaccard; `by="containment"` ranks by how much of `nid`'s
    weight the other graph covers (finds the big graphs that contain this one). Each result:
    ``id``, ``layer``, ``neuron``, ``similarity``, ``containment`` (of nid in it),
    ``containment_rev`` (of it in nid), ``official``, ``relation`` (of nid to it), ``shared``.
    """
    n = nid if isinstance(nid, NeuronId) else NeuronId.parse(str(nid))
    if top < 1:
        raise N2GError(f"--top must be at least 1, got {top}")
    if by not in ("similarity", "containment"):
        raise N2GError(f"unknown ranking {by!r}: use similarity or containment")
    wa, wi = _rw(role_weights)
    me = conn.execute(
        "SELECT n_activating + n_important, ? * sum_activating + ? * sum_important "
        "FROM graph_stats WHERE layer = ? AND neuron = ?",
        (wa, wi, n.layer, n.neuron),
    ).fetchone()
    if me is None:
        raise N2GError(
            f"neuron {n} has no indexed graph: check the id or build it with `n2g build`"
        )
    n_a, t_a = me
    order = "sim" if by == "similarity" else "cont"
    sql = f"""
        WITH shared AS (
            SELECT g.layer, g.neuron, g.role, g.token,
                   MIN(q.weight, g.weight) * CASE g.role WHEN 'activating' THEN ? ELSE ? END AS m
            FROM graph_tokens q JOIN graph_tokens g ON g.role = q.role AND g.token = q.token
            WHERE q.layer = ? AND q.neuron = ? AND NOT (g.layer = ? AND g.neuron = ?)
        ), agg AS (
            SELECT layer, neuron, SUM(m) AS smin, COUNT(*) AS n_shared,
                   json_group_array(json_array(role, token)) AS toks
            FROM shared GROUP BY layer, neuron
        )
        SELECT a.layer, a.neuron, a.smin, a.n_shared, a.toks,
               s.n_activating + s.n_important AS n_b,
               ? * s.sum_activating + ? * s.sum_important AS t_b,
               a.smin / MAX(? + ? * s.sum_activating + ? * s.sum_important - a.smin, 1e-12)
                   AS sim,
               a.smin / MAX(?, 1e-12) AS cont
        FROM agg a JOIN graph_stats s USING (layer, neuron)
        ORDER BY {order} DESC, sim DESC, a.layer, a.neuron
        LIMIT ?
    """
    params = (wa, wi, n.layer, n.neuron, n.layer, n.neuron, wa, wi, t_a, wa, wi, t_a, top)
    mine = _token_set(conn, n.layer, n.neuron)
    out = []
    rows = conn.execute(sql, params).fetchall()
    for layer, neuron, smin, n_shared, toks, n_b, t_b, sim, cont in rows:
        theirs = _token_set(conn, layer, neuron)
        out.append(
            {
                "id": f"{layer}:{neuron}",
                "layer": layer,
                "neuron": neuron,
                "similarity": round(sim, 6),
                "containment": round(cont, 6),
                "containment_rev": round(smin / t_b, 6) if t_b > 0 else 0.0,
                "official": _official(mine, theirs),
                "relation": _relation(n_shared, n_a, n_b),
                "shared": [{"role": r, "token": t} for r, t in sorted(json.loads(toks))],
            }
        )
    return out


def _load_vectors(
    conn: sqlite3.Connection, wa: float, wi: float
) -> tuple[list[tuple[int, int]], list[dict[int, float]], list[tuple[str, str]]]:
    """All graphs as sparse vectors over interned ``(role, token)`` dimension ids."""
    ids: list[tuple[int, int]] = []
    vecs: list[dict[int, float]] = []
    dims: dict[tuple[str, str], int] = {}
    last: tuple[int, int] | None = None
    rows = conn.execute(
        "SELECT layer, neuron, role, token, weight FROM graph_tokens ORDER BY layer, neuron"
    )
    for layer, neuron, role, token, weight in rows:
        if (layer, neuron) != last:
            last = (layer, neuron)
            ids.append(last)
            vecs.append({})
        d = dims.setdefault((role, token), len(dims))
        vecs[-1][d] = max(weight, 0.0) * (wa if role == ACTIVATING else wi)
    names = list(dims)
    return ids, vecs, names


def similar_pairs(
    conn: sqlite3.Connection,
    threshold: float = 0.9,
    *,
    role_weights: dict[str, float] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Every pair of graphs with weighted Jaccard >= `threshold`, most similar first.

    Scales by prefix filtering on an inverted index, not by comparing all pairs. Dimensions of
    each vector are ordered rarest first; a graph is indexed only under its *prefix*, the rarest
    dimensions up to the point where the weight left in the suffix is below ``threshold * |A|``.
    If A and B shared no prefix dimension of A, then ``sum min <= suffix(A) < threshold * |A|
    <= threshold * sum max`` and they could not reach the threshold; so probing the prefix index
    with B's full vector finds every qualifying pair. A length filter (``|A| >= t |B|``) prunes
    more. Cost: O(R log R) to build (R = index rows) plus one exact check per candidate pair;
    candidates are the pairs sharing a *rare* dimension, far fewer than n^2/2 on real graphs
    (worst case, thousands of identical graphs, is still quadratic in their number).

    Each result: ``a``, ``b`` (ids, a < b), ``similarity``, ``containment_ab`` (of a in b),
    ``containment_ba``, ``official``, ``relation`` (of a to b), ``shared``.
    """
    if not 0.0 < threshold <= 1.0:
        raise N2GError(f"--threshold must be in (0, 1], got {threshold}")
    from tqdm import tqdm

    wa, wi = _rw(role_weights)
    ids, vecs, names = _load_vectors(conn, wa, wi)
    df: defaultdict[int, int] = defaultdict(int)
    for v in vecs:
        for d in v:
            df[d] += 1
    totals = [sum(v.values()) for v in vecs]
    order = sorted((i for i in range(len(vecs)) if totals[i] > 0), key=lambda i: totals[i])
    index: defaultdict[int, list[int]] = defaultdict(list)
    slack = 1.0 - 1e-9  # a slightly longer prefix than needed keeps the filter sound under rounding
    found: list[dict[str, Any]] = []
    for b in tqdm(order, desc="similar pairs", unit="graph", file=sys.stderr, disable=not progress):
        vb, tb = vecs[b], totals[b]
        seen: set[int] = set()
        for d in vb:
            for a in index.get(d, ()):
                if a in seen:
                    continue
                seen.add(a)
                ta = totals[a]
                if ta < threshold * tb:  # length filter (ta <= tb by processing order)
                    continue
                va = vecs[a]
                shared = (
                    [x for x in va if x in vb] if len(va) < len(vb) else [x for x in vb if x in va]
                )
                smin = sum(min(va[x], vb[x]) for x in shared)
                sim = smin / (ta + tb - smin)
                if sim >= threshold:
                    found.append(_pair(ids, names, a, b, va, vb, ta, tb, shared, smin, sim))
        # index b under its prefix: rarest dims until the suffix left is < threshold * |b|
        rest = tb
        for d in sorted(vb, key=lambda x: (df[x], x)):
            if rest < threshold * tb * slack:
                break
            index[d].append(b)
            rest -= vb[d]
    found.sort(key=lambda p: (-p["similarity"], NeuronId.parse(p["a"]), NeuronId.parse(p["b"])))
    return found


def _pair(
    ids: list[tuple[int, int]],
    names: list[tuple[str, str]],
    a: int,
    b: int,
    va: dict[int, float],
    vb: dict[int, float],
    ta: float,
    tb: float,
    shared: list[int],
    smin: float,
    sim: float,
) -> dict[str, Any]:
    if ids[b] < ids[a]:  # report the lower id first
        a, b, va, vb, ta, tb = b, a, vb, va, tb, ta
    return {
        "a": "{}:{}".format(*ids[a]),
        "b": "{}:{}".format(*ids[b]),
        "similarity": round(sim, 6),
        "containment_ab": round(smin / ta, 6),
        "containment_ba": round(smin / tb, 6),
        "official": _official({names[d][1] for d in va}, {names[d][1] for d in vb}),
        "relation": _relation(len(shared), len(va), len(vb)),
        "shared": [{"role": names[d][0], "token": names[d][1]} for d in sorted(shared)],
    }


__all__ = ["ROLE_WEIGHTS", "similar_neurons", "similar_pairs"]
