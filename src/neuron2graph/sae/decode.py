"""Weight-based decoding of latents: what a latent writes and reads, in tokens.

Write side: the decoder row `W_dec[i]` is what latent i adds at the site it writes; through the
final norm's linear part and the unembedding it gives the tokens the latent promotes (its direct
effect, as for neurons in decode/weights.py). A coder that writes the MLP's hidden activations
(`mlp_post`) is first carried into the residual stream by the MLP's output projection.
Read side: the encoder column `W_enc[:, i]` is the direction the latent reads; it is decoded the
same way, which makes read and write comparable token-wise (meaningful for residual-width sites).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from neuron2graph.decode.weights import FinalNorm, unembedding, write_columns
from neuron2graph.errors import N2GError
from neuron2graph.models.loading import LoadedModel
from neuron2graph.sae.model import Sae
from neuron2graph.tokens import token_piece


def latent_directions(lm: LoadedModel, sae: Sae, side: str,
                      latents: Tensor | None = None) -> Float[Tensor, "n d_model"]:
    """Residual-space directions of the latents (`side` is "write" or "read")."""
    pick = slice(None) if latents is None else latents
    if side == "write":
        rows = sae.W_dec[pick]
        if sae.info.writes.site == "mlp_post":
            rows = rows @ write_columns(lm, sae.info.writes.layer).float()
    elif side == "read":
        rows = sae.W_enc.T[pick]
        if sae.info.reads.site == "mlp_post":
            raise N2GError("a coder that reads MLP neurons has no residual read direction: "
                           "decode its write side")
    else:
        raise N2GError(f"unknown side {side!r}: use write or read")
    return rows


@torch.inference_mode()
def latent_logits(lm: LoadedModel, sae: Sae, side: str = "write",
                  latents: Tensor | None = None) -> Float[Tensor, "n vocab"]:
    """Direct-effect logits per unit of latent activation (up to the final norm's scale)."""
    dirs = latent_directions(lm, sae, side, latents)
    unemb = unembedding(lm)
    return FinalNorm(lm)(dirs, unemb.dtype).float() @ unemb.float().T


def top_tokens(lm: LoadedModel, sae: Sae, latent: int, *, side: str = "write",
               k: int = 10) -> dict[str, list[dict[str, Any]]]:
    """The k most promoted and most suppressed tokens of one latent."""
    if not 0 <= latent < sae.d_sae:
        raise N2GError(f"latent {latent} is out of range: this coder has 0..{sae.d_sae - 1}")
    logits = latent_logits(lm, sae, side, torch.tensor([latent]))[0]
    out: dict[str, list[dict[str, Any]]] = {}
    for name, vals in (("top", logits.topk(k)), ("bottom", (-logits).topk(k))):
        sign = 1 if name == "top" else -1
        out[name] = [{"token": token_piece(lm.tokenizer, int(i)), "id": int(i),
                      "logit": round(sign * float(v), 4)}
                     for v, i in zip(vals.values, vals.indices, strict=True)]
    return out
