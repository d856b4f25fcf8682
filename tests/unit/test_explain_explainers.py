"""LLM-free explainers: the graph sentence and the token sentence."""

from __future__ import annotations

from neuron2graph.explain.examples import Context, UnitExamples
from neuron2graph.explain.explainers import GraphExplainer, TokensExplainer, UnitInput
from neuron2graph.explain.explainers.graph import graph_sentence
from neuron2graph.n2g.graph import NeuronGraph


def _graph() -> NeuronGraph:
    g = NeuronGraph("1:1")
    g.add_path(" except", 0.9, [(" all", 1.0)])
    g.add_path(" except", 0.6, [None, None, (" both", 0.8)])
    g.add_path(" cat", 0.5, [])
    return g


def test_graph_sentence_reads_paths() -> None:
    assert graph_sentence(_graph()) == (
        "Fires on ` except` after ` all` or after ` both` 3 tokens back; on ` cat` in any context."
    )
    assert graph_sentence(NeuronGraph("1:2")) is None


def _examples() -> UnitExamples:
    ctx = Context(window=0, start=0, token_ids=[1, 2, 3], tokens=[" all", " except", " x"],
                  acts=[0.0, 4.0, 1.0], kind="activating", quantile=9)
    return UnitExamples(unit="1:1", a_max=4.0, train=[ctx], test=[], negative=[],
                        hard_negative=[])


def test_explainers_share_one_interface() -> None:
    unit = UnitInput(_examples(), _graph())
    (g,) = GraphExplainer().explain([unit])
    assert g.status == "ok" and g.text and g.text.startswith("Fires on ` except`")
    (t,) = TokensExplainer().explain([unit])
    assert t.text == "Fires on the tokens ` except`, ` x`."
    (missing,) = GraphExplainer().explain([UnitInput(_examples(), None)])
    assert missing.status == "failed" and missing.text is None and missing.error
