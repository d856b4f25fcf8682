"""Prompt formatting and answer parsing (no model)."""

from __future__ import annotations

from neuron2graph.explain.llm import Answer, p_one
from neuron2graph.explain.prompts import (
    format_example,
    highlight,
    messages,
    parse_binary,
    parse_explanation,
    parse_simulation,
    scale10,
)


def test_highlight_merges_runs_like_delphi() -> None:
    toks = ["The", " cat", " sat", " on", " all", " except"]
    marks = [False, True, True, False, False, True]
    assert highlight(toks, marks) == "The<< cat sat>> on all<< except>>"
    assert highlight(["a"], [True]) == "<<a>>"
    assert highlight(["a", "b"], [False, False]) == "ab"


def test_scale_and_format_example() -> None:
    assert scale10([0.0, 0.5, 1.0, -3.0, 2.0], 1.0) == [0, 5, 10, 0, 10]
    text = format_example(3, [" all", " except"], [0.1, 2.0], 2.0, 0.2)
    assert text == "Example 3:  all<< except>>\nActivations: (' except', 10)"


def test_templates_fill_every_placeholder() -> None:
    msgs = messages("detect", explanation="fires on cat", text="the cat")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "fires on cat" in msgs[1]["content"] and "the cat" in msgs[1]["content"]
    assert "$" not in msgs[1]["content"]
    for kind, fields in (("explain", {"examples": "E"}),
                         ("fuzz", {"explanation": "x", "text": "t"}),
                         ("simulate", {"explanation": "x", "tokens": "a\nb"}),
                         ("simulate_slots", {"explanation": "x", "text": "a b"})):
        assert "$" not in messages(kind, **fields)[1]["content"]


def test_parse_explanation() -> None:
    assert parse_explanation("thinking...\n[EXPLANATION]: fires on ` except`") == \
        "fires on ` except`"
    assert parse_explanation("[explanation] : \"the word cat\"\nmore") == "the word cat"
    # the last one wins (models restate the format first)
    assert parse_explanation("[EXPLANATION]: <x>\n[EXPLANATION]: cats") == "cats"
    assert parse_explanation("it fires on cats") is None
    assert parse_explanation("[EXPLANATION]:   ") is None
    assert parse_explanation("[EXPLANATION]:\n") is None  # no text after the prefill
    assert parse_explanation("[EXPLANATION]:\nfires on cats") == "fires on cats"


def test_parse_binary_and_simulation() -> None:
    assert parse_binary("1") == 1 and parse_binary(" 0.") == 0
    assert parse_binary("Yes, it does") == 1 and parse_binary("no") == 0
    assert parse_binary("10") is None and parse_binary("maybe") is None
    assert parse_simulation("a\t3\nb\t10\nc\t12", 3) == [3.0, 10.0, 10.0]
    assert parse_simulation("a\t3\nb", 2) is None


def test_p_one_from_logprobs_or_text() -> None:
    import math

    assert p_one(Answer(text="1", logprobs={"1": math.log(0.6), "0": math.log(0.2)})) == \
        __import__("pytest").approx(0.75)
    assert p_one(Answer(text="x", logprobs={"1": -1.0})) == 1.0
    assert p_one(Answer(text="0")) == 0.0
    assert p_one(Answer(text="dunno")) is None
