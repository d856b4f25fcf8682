"""A sparse autoencoder or transcoder as one small torch module, whatever format it came from.

Conventions (SAELens'): `W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_out]`,
`b_dec [d_out]`. An SAE has `d_out == d_in` and reads and writes the same site; a transcoder reads
one site (the MLP input) and predicts another (the MLP output). Architectures:

- `relu` (SAELens "standard"): `relu(pre)`;
- `topk`: keep the k largest of `relu(pre)` per token (sparsify's encoder, SAELens "topk");
- `jumprelu`: `pre * (pre > threshold)` with a per-latent threshold (Gemma Scope, SAELens).

`pre = (x - b_dec if apply_b_dec_to_input else x) @ W_enc + b_enc`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from neuron2graph.errors import N2GError
from neuron2graph.sae.hooks import HookPoint

Architecture = Literal["relu", "topk", "jumprelu"]
ARCHITECTURES: tuple[Architecture, ...] = ("relu", "topk", "jumprelu")


@dataclass(frozen=True)
class SaeInfo:
    """What an SAE is and where it belongs; enough to check it against a model."""

    d_in: int
    d_sae: int
    d_out: int
    architecture: Architecture
    reads: HookPoint
    writes: HookPoint
    k: int | None = None
    apply_b_dec_to_input: bool = True
    model_name: str | None = None
    """The model it was trained on, as its files name it (None when they do not)."""
    hook_name: str = ""
    """The hook name exactly as the files spell it."""
    format: str = "n2g"
    path: str = ""

    @property
    def layer(self) -> int:
        return self.reads.layer

    @property
    def transcoder(self) -> bool:
        return self.reads != self.writes

    def describe(self) -> str:
        kind = "transcoder" if self.transcoder else "SAE"
        arch = f"topk k={self.k}" if self.architecture == "topk" else self.architecture
        return (f"{self.format} {kind} ({arch}) {self.d_in}->{self.d_sae} latents at layer "
                f"{self.layer} {self.reads.site}" +
                (f" -> {self.writes.site}" if self.transcoder else ""))


class Sae(nn.Module):
    """Encoder and decoder weights as buffers (we never train here; sparsify does)."""

    W_enc: Tensor
    b_enc: Tensor
    W_dec: Tensor
    b_dec: Tensor
    threshold: Tensor
    W_skip: Tensor

    def __init__(
        self,
        info: SaeInfo,
        W_enc: Float[Tensor, "d_in d_sae"],
        b_enc: Float[Tensor, " d_sae"],
        W_dec: Float[Tensor, "d_sae d_out"],
        b_dec: Float[Tensor, " d_out"],
        *,
        threshold: Float[Tensor, " d_sae"] | None = None,
        W_skip: Float[Tensor, "d_out d_in"] | None = None,
    ) -> None:
        super().__init__()
        d_in, d_sae = info.d_in, info.d_sae
        expect = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, info.d_out),
                  "b_dec": (info.d_out,)}
        got = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
        if threshold is not None:
            expect["threshold"], got["threshold"] = (d_sae,), threshold
        if W_skip is not None:
            expect["W_skip"], got["W_skip"] = (info.d_out, d_in), W_skip
        for name, shape in expect.items():
            if tuple(got[name].shape) != shape:
                raise N2GError(
                    f"{info.path or 'SAE'}: {name} has shape {tuple(got[name].shape)}, the config "
                    f"says {shape}: the weights and cfg.json do not belong together"
                )
        if info.architecture not in ARCHITECTURES:
            raise N2GError(f"unknown SAE architecture {info.architecture!r}: use relu, topk or "
                           "jumprelu")
        if info.architecture == "topk" and not (info.k and 0 < info.k <= d_sae):
            raise N2GError(f"TopK SAE needs 1 <= k <= {d_sae}, got k={info.k}")
        if info.architecture == "jumprelu" and threshold is None:
            raise N2GError(f"{info.path or 'SAE'}: a JumpReLU SAE needs a `threshold` tensor")
        if info.apply_b_dec_to_input and info.d_in != info.d_out:
            raise N2GError("apply_b_dec_to_input needs d_in == d_out (a transcoder has neither)")
        self.info = info
        self.register_buffer("W_enc", W_enc.detach().float().contiguous())
        self.register_buffer("b_enc", b_enc.detach().float())
        self.register_buffer("W_dec", W_dec.detach().float().contiguous())
        self.register_buffer("b_dec", b_dec.detach().float())
        if threshold is not None:
            self.register_buffer("threshold", threshold.detach().float())
        self.has_skip = W_skip is not None
        if W_skip is not None:
            self.register_buffer("W_skip", W_skip.detach().float())

    @property
    def d_sae(self) -> int:
        return self.info.d_sae

    def pre_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        x = x.to(self.W_enc.dtype)
        if self.info.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Dense latent activations (zeros where a latent is off)."""
        pre = self.pre_acts(x)
        arch = self.info.architecture
        if arch == "relu":
            return torch.relu(pre)
        if arch == "jumprelu":
            return pre * (pre > self.threshold)
        values, indices = self.encode_topk(x, pre=pre)
        return torch.zeros_like(pre).scatter_(-1, indices, values)

    def encode_topk(
        self, x: Float[Tensor, "... d_in"], *, pre: Tensor | None = None
    ) -> tuple[Float[Tensor, "... k"], Int[Tensor, "... k"]]:
        """The k active latents of a TopK SAE as (values, indices), values >= 0."""
        assert self.info.k is not None, "encode_topk is for TopK SAEs"
        pre = self.pre_acts(x) if pre is None else pre
        values, indices = torch.relu(pre).topk(self.info.k, dim=-1)
        return values, indices

    def decode(self, acts: Float[Tensor, "... d_sae"],
               x: Float[Tensor, "... d_in"] | None = None) -> Float[Tensor, "... d_out"]:
        """Reconstruction (SAE) or prediction (transcoder); `x` feeds a skip connection."""
        out = acts.to(self.W_dec.dtype) @ self.W_dec + self.b_dec
        if self.has_skip:
            if x is None:
                raise ValueError("this coder has a skip connection: pass its input x to decode")
            out = out + x.to(self.W_skip.dtype) @ self.W_skip.T
        return out

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        return self.decode(self.encode(x), x)


def random_like(sae: Sae, *, seed: int = 0) -> Sae:
    """A control coder: same shape, architecture, site and sparsity rule, random weights.

    Encoder and decoder rows are random unit directions scaled to the trained ones' mean norms;
    biases are kept, so a random latent fires about as often as a trained one would by chance.
    JumpReLU thresholds and TopK's k are kept too. Tables compare trained latents against these.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand_rows(w: Tensor) -> Tensor:
        r = torch.randn(w.shape, generator=gen)
        r = r / r.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return r * w.norm(dim=-1).mean()

    info = replace(sae.info, format=f"random({sae.info.format})", path=f"random:{sae.info.path}")
    return Sae(info, rand_rows(sae.W_enc.T).T, sae.b_enc.clone(), rand_rows(sae.W_dec),
               sae.b_dec.clone(),
               threshold=sae.threshold.clone() if sae.info.architecture == "jumprelu" else None,
               W_skip=sae.W_skip.clone() if sae.has_skip else None)
