"""The masked-LM augmenter with a tiny random BERT (no download): substitutes map to single tokens
of the studied tokenizer, so prompts keep their length and positions."""

from __future__ import annotations

import pytest
import torch

from neuron2graph.errors import N2GError
from neuron2graph.n2g.augment import AugmentConfig, AugmentItem, MaskedLMAugmenter
from neuron2graph.testing import tiny_tokenizer


def _bert() -> tuple[object, object]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "dog", "zebra",
             "bird", "on", "mat"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    mlm_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32,
                                       max_position_embeddings=64))
    with torch.no_grad():
        bias = model.get_output_embeddings().bias
        bias.zero_()
        bias[vocab["dog"]] = 10.0
        bias[vocab["zebra"]] = 9.8  # not in the studied vocabulary: must be skipped
        bias[vocab["bird"]] = 9.6
        bias[vocab["cat"]] = 9.4  # the original token: never a substitute
    return model, mlm_tok


def test_masked_lm_substitutes_are_single_studied_tokens() -> None:
    studied = tiny_tokenizer()
    model, mlm_tok = _bert()
    aug = MaskedLMAugmenter(model, studied, AugmentConfig(n_substitutes=5, min_prob=0.01),
                            mlm_tokenizer=mlm_tok)
    ids = studied.convert_tokens_to_ids(["the", "cat", "sat"])
    out = aug.augment([AugmentItem(ids, [1]), AugmentItem(ids, [])])
    subs = [studied.convert_ids_to_tokens(p) for p in out[0]]
    assert subs[:2] == [["the", "dog", "sat"], ["the", "bird", "sat"]]
    assert all(len(p) == len(ids) for p in out[0])
    assert ["the", "zebra", "sat"] not in subs and ["the", "cat", "sat"] not in subs
    assert all(s[1] != "<unk>" for s in subs)
    assert out[1] == []


def test_multi_token_words_are_skipped_and_bad_models_are_one_line_errors() -> None:
    studied = tiny_tokenizer()
    model, mlm_tok = _bert()
    aug = MaskedLMAugmenter(model, studied, mlm_tokenizer=mlm_tok)
    assert aug._to_studied("cat dog", "cat") is None
    assert aug._to_studied("dog", "cat") == studied.convert_tokens_to_ids("dog")
    with pytest.raises(N2GError, match="needs its tokenizer"):
        MaskedLMAugmenter(model, studied)
    with pytest.raises(N2GError, match="cannot load fill-mask model"):
        MaskedLMAugmenter("/nonexistent/fill-mask-model", studied)


def test_pipeline_with_a_fill_mask_model_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from n2g_planted import LAYER, PAIR, A, B, planted_llama

    from neuron2graph.models import neuron_activations
    from neuron2graph.n2g.pipeline import N2GConfig, NeuronRequest, build_graphs

    model, mlm_tok = _bert()
    model.save_pretrained(tmp_path / "bert")  # type: ignore[attr-defined]
    mlm_tok.save_pretrained(tmp_path / "bert")  # type: ignore[attr-defined]
    lm = planted_llama()
    ids = [lm.tokenizer.convert_tokens_to_ids(t) for t in (["the", A, "cat", B], [A, B, "sat"])]
    a_max = max(float(a.max()) for a in neuron_activations(lm, ids, LAYER, [PAIR]))
    res = build_graphs(lm, [NeuronRequest(LAYER, PAIR, ids, a_max)],
                       N2GConfig(augmenter=str(tmp_path / "bert")))[0]
    assert res.stats.augmented_prompts > 0 and res.stats.flags == []
    assert set(res.graph.activating_tokens) == {B}
    assert res.graph.context_tokens().keys() == {A}
