"""Tiny random-init models and a word-level tokenizer, for tests and examples with no download.

`tiny_model(family)` builds a 2-4 layer model of any supported family from its config. `plant_*`
helpers set weights so that a chosen neuron fires on a known pattern, which lets tests check that
the pipeline *recovers* behaviour rather than merely runs.
"""

from __future__ import annotations

from typing import Any

import torch

from neuron2graph.models.loading import LoadedModel, wrap_model

WORDS = (
    "the a an of and to in is was it that for on with as at by from this be or are not but all "
    "except cat dog sat mat house river tree bird fish red blue green big small run walk said "
    "when if then else while return def class import print open close x y z one two three four "
    "five six seven eight nine ten"
).split()
SPECIALS = ["<pad>", "<bos>", "<unk>"]


def tiny_tokenizer() -> Any:
    """A whitespace word-level tokenizer over `WORDS` (ids 0-2 are <pad>, <bos>, <unk>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", unk_token="<unk>",
        eos_token="<pad>",
    )


def tiny_config(family: str, vocab_size: int, *, n_layers: int = 2) -> Any:
    import transformers as tf

    d, mlp, heads = 32, 64, 4
    ids: dict[str, Any] = {"bos_token_id": 1, "eos_token_id": 0, "pad_token_id": 0}
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=vocab_size, n_embd=d, n_layer=n_layers, n_head=heads,
                             n_inner=mlp, n_positions=128, **ids)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(vocab_size=vocab_size, hidden_size=d, num_hidden_layers=n_layers,
                                num_attention_heads=heads, intermediate_size=mlp,
                                max_position_embeddings=128, **ids)
    if family == "opt":
        return tf.OPTConfig(vocab_size=vocab_size, hidden_size=d, num_hidden_layers=n_layers,
                            num_attention_heads=heads, ffn_dim=mlp, word_embed_proj_dim=d,
                            max_position_embeddings=128, **ids)
    common = dict(vocab_size=vocab_size, hidden_size=d, num_hidden_layers=n_layers,
                  num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=mlp,
                  max_position_embeddings=128, **ids)
    configs = {
        "llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config,
        "gemma": tf.GemmaConfig,
    }
    if family not in configs:
        raise ValueError(f"no tiny config for {family}")
    extra: dict[str, Any] = {"head_dim": d // heads} if family == "gemma" else {}
    return configs[family](**common, **extra)


FAMILIES = ("gpt2", "gpt_neox", "opt", "llama", "mistral", "qwen2", "gemma")


def tiny_model(family: str = "llama", *, n_layers: int = 2, seed: int = 0) -> LoadedModel:
    """A random-init model of `family` with the tiny tokenizer, wrapped for neuron reading."""
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    config = tiny_config(family, len(tokenizer), n_layers=n_layers)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return wrap_model(model, tokenizer, spec=f"tiny-{family}", device="cpu")


def token_id(lm: LoadedModel, word: str) -> int:
    return int(lm.tokenizer.convert_tokens_to_ids(word))


def random_latents(lm: LoadedModel, n_units: int = 9216, *, k: int = 16, seed: int = 0,
                   sparse: bool = True) -> Any:
    """A fake SAE source: TopK(ReLU(W x)) of each layer's residual stream output, `n_units`
    random latents of which at most `k` are nonzero per token. For tests and memory benchmarks
    of sparse units without an SAE file (the real SAE source comes with the SAE issue)."""
    from neuron2graph.units.source import ActivationSource

    class RandomLatents(ActivationSource):
        kind = "random-latents"
        site = "resid_post"

        def __init__(self) -> None:
            super().__init__(lm)
            self.sparse = sparse
            embed: Any = lm.model.get_input_embeddings()  # type: ignore[operator]
            d_model = int(embed.weight.shape[1])
            gen = torch.Generator().manual_seed(seed)
            self.encoder = torch.randn(n_units, d_model, generator=gen) / d_model**0.5

        @property
        def noun(self) -> str:
            return "latent"

        def n_units(self, layer: int) -> int:
            return n_units

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            pre = torch.relu(x.float() @ self.encoder.T)
            top = pre.topk(min(k, n_units), dim=-1)
            return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)

        def activations(self, input_ids: Any, layers: Any, *, attention_mask: Any = None,
                        units: dict[int, torch.Tensor] | None = None,
                        cache: Any = None) -> dict[int, torch.Tensor]:
            from neuron2graph.models.hooks import capture

            self._check_request(layers, units)

            def encode_layer(layer: int) -> Any:
                index = (units or {}).get(layer)
                return lambda x: self.encode(x) if index is None else self.encode(x)[..., index]

            transform = {(layer, "resid_post"): encode_layer(layer) for layer in layers}
            got = capture(lm, input_ids, [(layer, "resid_post") for layer in layers],
                          attention_mask=attention_mask, transform=transform)  # type: ignore[arg-type]
            return {layer: acts for (layer, _), acts in got.items()}

    return RandomLatents()
