"""Saved artefacts behave exactly like the objects that were saved.

A graph written to JSON and read back must predict bit-identically to the graph in memory on any
text (it once rounded activations to 6 digits, and a fresh clone's suite saw 0.9999995 != 1.0).
The same holds for the JSON files later stages read numbers from (eval rows, settings, manifests):
they all go through `write_json_atomic`, so a float property test covers them.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.store.atomic import write_json_atomic

FIXTURE = HealthCheck.function_scoped_fixture  # tmp_path is reused across examples: fine

VOCAB = [" a", " b", "a", "A", " A", "c", "\n", " except", " all", "é", "*", ""]
token = st.sampled_from(VOCAB)
# Any finite float, including subnormals and values that 6-digit rounding would change.
value = st.floats(allow_nan=False, allow_infinity=False, width=64)
context_item = st.one_of(st.none(), st.tuples(token, value))
path = st.tuples(token, value, st.lists(context_item, max_size=6))


@st.composite
def graphs(draw: st.DrawFn) -> NeuronGraph:
    graph = NeuronGraph("3:41", fold=draw(st.booleans()), meta={"a_max": draw(value)})
    for i, (tok, act, ctx) in enumerate(draw(st.lists(path, min_size=0, max_size=12))):
        graph.add_path(tok, act, ctx, example=i)
    return graph


def bits(values: list[float]) -> list[bytes]:
    """Exact comparison, sign of zero included."""
    return [struct.pack("<d", v) for v in values]


@settings(max_examples=150, deadline=None, suppress_health_check=[FIXTURE])
@given(graph=graphs(), texts=st.lists(st.lists(token, max_size=20), min_size=1, max_size=5))
def test_saved_graph_predicts_bit_identically(
    tmp_path: Path, graph: NeuronGraph, texts: list[list[str]]
) -> None:
    file = tmp_path / "g.json"
    graph.save(file)
    loaded = NeuronGraph.load(file)
    assert loaded.to_json() == graph.to_json()
    assert loaded.n_nodes() == graph.n_nodes()
    for text in texts:
        for search in ("longest", "greedy"):
            assert bits(loaded.predict(text, search=search)) == bits(
                graph.predict(text, search=search)
            )
        assert loaded.explain(text) == graph.explain(text)


def test_graph_json_keeps_full_precision(tmp_path: Path) -> None:
    """The regression itself: a value that 6-digit rounding turns into 1.0."""
    graph = NeuronGraph("0:1")
    graph.add_path(" x", 0.9999995796481739, [(" y", 0.123456789012345)])
    graph.save(tmp_path / "g.json")
    loaded = NeuronGraph.load(tmp_path / "g.json")
    assert loaded.predict([" y", " x"]) == [0.0, 0.9999995796481739]


@settings(max_examples=200, deadline=None, suppress_health_check=[FIXTURE])
@given(values=st.lists(st.floats(width=64), max_size=30))
def test_json_artefacts_round_trip_floats_exactly(tmp_path: Path, values: list[float]) -> None:
    """Eval rows, settings and manifests are written by `write_json_atomic`: every float (NaN and
    infinities too, which Python's json writes as NaN/Infinity) reads back with the same bits."""
    file = tmp_path / "row.json"
    write_json_atomic(file, {"values": values, "nested": [{"v": v} for v in values]})
    back = json.loads(file.read_text(encoding="utf-8"))
    for got in (back["values"], [d["v"] for d in back["nested"]]):
        assert len(got) == len(values)
        for a, b in zip(got, values, strict=True):
            assert (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
