"""Planted neurons on a tiny Llama: weights set by hand so the true behaviour is known.

Layer 0 attention, head 0, computes "an A is among the 3 previous tokens": its query is constant
and its key is non-zero only on token A, in two rotary pairs whose frequencies make the score
high for an A 0-3 tokens back and very negative for 4-31 tokens back (texts here stay under 30
tokens); the value/output write A's presence into residual dimension 4. Layer 1's MLP holds the
two neurons:

- neuron 0 (`SINGLE`): gate reads "is C" minus a bias, so it fires on C in any context;
- neuron 1 (`PAIR`): gate reads "is B" + "A seen" minus a bias, so it fires on B only after an A.

Everything else is zero. Residual layout: 0 = constant 1, 1 = is A, 2 = is B, 3 = is C,
4 = A seen, 5.. = one dimension per other token (so every embedding has the same norm).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from neuron2graph.models.loading import LoadedModel, wrap_model
from neuron2graph.testing import tiny_tokenizer

A, B, C = "all", "except", "cat"
SINGLE, PAIR = 0, 1
LAYER = 1


def planted_llama() -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    vocab = len(tok)
    d, heads, mlp = 32, 4, 8
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=heads,
                      intermediate_size=mlp, max_position_embeddings=128,
                      bos_token_id=1, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager").eval()
    ids = {w: int(tok.convert_tokens_to_ids(w)) for w in (A, B, C)}
    with torch.no_grad():
        for p in model.model.layers.parameters():
            if p.dim() > 1:
                p.zero_()
        emb = model.model.embed_tokens.weight
        emb.zero_()
        emb[:, 0] = 1.0
        slot = 5
        for t in range(vocab):
            if t == ids[A]:
                emb[t, 1] = 1.0
            elif t == ids[B]:
                emb[t, 2] = 1.0
            elif t == ids[C]:
                emb[t, 3] = 1.0
            else:
                emb[t, slot] = 1.0
                slot = 5 + (slot - 4) % (d - 5)
        att = model.model.layers[0].self_attn
        # Score of an A token at distance t: 1000 cos(0.1 t) - 938 (rotary pairs 1 and 3 of head
        # 0, frequencies 0.1 and 1e-3): >= +17 for t <= 3, <= -17 for 4 <= t <= 31.
        scale = 8**0.5 / 16  # q.k / sqrt(head_dim) on RMS-normalised inputs of 4
        far = -1000 * (math.cos(0.3) + math.cos(0.4)) / 2
        att.q_proj.weight[1, 0] = (1000 * scale) ** 0.5
        att.k_proj.weight[1, 1] = (1000 * scale) ** 0.5
        att.q_proj.weight[3, 0] = (-far * scale) ** 0.5
        att.k_proj.weight[3, 1] = -((-far * scale) ** 0.5)
        att.v_proj.weight[0, 1] = 0.25
        att.o_proj.weight[4, 0] = 1.0
        mlp_mod = model.model.layers[1].mlp
        alpha = 3.0
        mlp_mod.gate_proj.weight[SINGLE, 3] = alpha
        mlp_mod.gate_proj.weight[SINGLE, 0] = -0.5 * alpha
        mlp_mod.gate_proj.weight[PAIR, 2] = alpha
        mlp_mod.gate_proj.weight[PAIR, 4] = alpha
        mlp_mod.gate_proj.weight[PAIR, 0] = -1.5 * alpha
        mlp_mod.up_proj.weight[SINGLE, 0] = 1.0
        mlp_mod.up_proj.weight[PAIR, 0] = 1.0
    return wrap_model(model, tok, spec="planted-llama", device="cpu")


def save_planted(root: Path) -> Path:
    """Save the planted model and its tokenizer under root/model, for `--model <folder>` tests."""
    lm = planted_llama()
    model_dir = root / "model"
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    return model_dir
