"""Embedding and surprisal scorers on real models (MiniLM, offline package; a tiny Llama)."""

from __future__ import annotations

import pytest

from neuron2graph.explain.examples import Context, UnitExamples


def _ctx(text: str, act: float, kind: str) -> Context:
    toks = [f" {w}" for w in text.split()]
    return Context(window=0, start=0, token_ids=list(range(len(toks))), tokens=toks,
                   acts=[act] * len(toks), kind=kind)


def test_embedding_retrieves_the_described_contexts() -> None:
    from neuron2graph.explain.scorers.embedding import embedding_score

    pos = ["my cat sleeps on the sofa", "the kitten chased a mouse", "cats purr when happy"]
    neg = ["the invoice total is 42 dollars", "compile the kernel with gcc",
           "interest rates rose in march"]
    ex = UnitExamples(unit="0:0", a_max=1.0, train=[], test=[_ctx(t, 1.0, "activating")
                                                               for t in pos],
                      negative=[_ctx(t, 0.0, "negative") for t in neg], hard_negative=[])
    good = embedding_score("sentences about cats", ex)
    bad = embedding_score("sentences about money and computers", ex)
    assert good["auroc"] == 1.0 and bad["auroc"] < good["auroc"] and good["n"] == 6


def test_mean_nll_matches_a_direct_computation() -> None:
    import torch

    from neuron2graph.explain.scorers.surprisal import mean_nll
    from neuron2graph.testing import tiny_model

    lm = tiny_model("llama")
    tok = lm.tokenizer
    prefix, text = "the cat", "sat on the mat"
    (got,) = mean_nll(lm.model, tok, [(prefix, text)])
    ids = [tok.bos_token_id, *tok.encode(prefix, add_special_tokens=False)]
    t = tok.encode(text, add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([ids + t])).logits[0], -1)
    want = -sum(float(logp[len(ids) + i - 1, t[i]]) for i in range(len(t))) / len(t)
    assert got == pytest.approx(want, abs=1e-5)
    # batched with a longer neighbour (right padding) gives the same value
    both = mean_nll(lm.model, tok, [(prefix, text), ("a b c d e f", "one two three four")])
    assert both[0] == pytest.approx(want, abs=1e-5)
