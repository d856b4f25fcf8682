"""Search the neurons and find their relatives, from an SQLite index of every graph's tokens.

- `index_run` / `index_graph` / `remove_graph`: keep the index tables in ``RUN/index.sqlite``
  up to date with ``RUN/graphs`` (incremental).
- `search_neurons`: "activating ` except` AND important ` all`", ranked by matched weight.
- `similar_neurons` / `similar_pairs`: weighted Jaccard over role-tagged tokens, with subsets.
- `neurons_by_components`: the most polysemantic neurons (disconnected behaviours).

All functions take a `sqlite3.Connection` (e.g. ``Run.db()``; `connect` opens a path) and return
JSON-serialisable values, so the CLI and the browser share them. No torch import here.
"""

from neuron2graph.search.components import behaviours, condensed_components, n_components
from neuron2graph.search.index import (
    IndexReport,
    connect,
    index_graph,
    index_run,
    is_stale,
    n_indexed,
    remove_graph,
)
from neuron2graph.search.query import neurons_by_components, search_neurons
from neuron2graph.search.similarity import ROLE_WEIGHTS, similar_neurons, similar_pairs

__all__ = [
    "ROLE_WEIGHTS",
    "IndexReport",
    "behaviours",
    "condensed_components",
    "connect",
    "index_graph",
    "index_run",
    "is_stale",
    "n_components",
    "n_indexed",
    "neurons_by_components",
    "remove_graph",
    "search_neurons",
    "similar_neurons",
    "similar_pairs",
]
