"""Decoding and steering a planted latent on a tiny model: its decoder row is the unembedding of
'cat', so its write side must decode to 'cat' and steering with it must raise 'cat'."""

from __future__ import annotations

import torch

from neuron2graph.decode.weights import unembedding
from neuron2graph.sae import HookPoint, Sae, SaeInfo
from neuron2graph.sae.decode import top_tokens
from neuron2graph.sae.sites import added_at
from neuron2graph.testing import tiny_model, token_id


def test_planted_latent_decodes_and_steers() -> None:
    lm = tiny_model("llama")
    cat = token_id(lm, "cat")
    d, n = 32, 8
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(n, d, generator=g) * 0.01
    W_dec[3] = unembedding(lm)[cat].float()
    point = HookPoint(1, "resid_post")
    info = SaeInfo(d_in=d, d_sae=n, d_out=d, architecture="relu", reads=point, writes=point)
    sae = Sae(info, W_dec.T.clone(), torch.zeros(n), W_dec, torch.zeros(d))
    decoded = top_tokens(lm, sae, 3, k=3)
    assert decoded["top"][0]["token"] == "cat"
    assert top_tokens(lm, sae, 3, side="read", k=1)["top"][0]["token"] == "cat"  # W_enc = W_dec.T
    ids = torch.tensor([[1, 5, 30, 31]])
    with torch.no_grad():
        base = lm.model(input_ids=ids).logits[0, -1].softmax(-1)
        with added_at(lm, sae.info.writes, 20 * sae.W_dec[3]):
            steered = lm.model(input_ids=ids).logits[0, -1].softmax(-1)
    # A random tiny model's logits are small (near-uniform softmax): 'cat' becomes the argmax.
    assert int(base.argmax()) != cat and int(steered.argmax()) == cat
    assert steered[cat] > 1.5 * base[cat]
