"""Save a model's tokenizer into the run, and load it back without torch.

The browser and `predict --graph` must tokenise text and show token pieces without loading the
model. `record` saves the tokenizer files into `RUN/tokenizer/`; here they are loaded with
transformers' `PreTrainedTokenizerFast`, which is backed by the Rust `tokenizers` library and
does not import torch (a test checks `sys.modules`). Where transformers cannot read the folder,
a thin wrapper over `tokenizers.Tokenizer` gives the small API the stages use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuron2graph.errors import N2GError

TOKENIZER_DIR = "tokenizer"


class BareTokenizer:
    """The subset of the Hugging Face tokenizer API the stages use, over `tokenizers.Tokenizer`."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self.pad_token_id: int | None = None
        self.bos_token_id: int | None = None

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [str(self._tok.id_to_token(int(i))) for i in ids]

    def __len__(self) -> int:
        return int(self._tok.get_vocab_size())


def save_tokenizer(tokenizer: Any, run_dir: Path) -> None:
    """Write the tokenizer files into RUN/tokenizer (a fast tokenizer's tokenizer.json at least)."""
    target = run_dir / TOKENIZER_DIR
    target.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(target))
    if not (target / "tokenizer.json").is_file():
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise N2GError(
                "the model's tokenizer is not a fast (Rust) tokenizer and cannot be saved for "
                "torch-free use: load a model that ships tokenizer.json"
            )
        backend.save(str(target / "tokenizer.json"))


def load_tokenizer(run_dir: Path) -> Any:
    """The run's saved tokenizer (RUN/tokenizer), without torch."""
    folder = run_dir / TOKENIZER_DIR
    if not (folder / "tokenizer.json").is_file():
        raise N2GError(
            f"{run_dir} has no saved tokenizer ({folder}/tokenizer.json): re-record the run "
            "with `n2g record --overwrite`"
        )
    return load_tokenizer_dir(folder)


def load_tokenizer_dir(folder: Path) -> Any:
    """A tokenizer from any folder holding tokenizer.json (the one loader; no torch)."""
    if not (folder / "tokenizer.json").is_file():
        raise N2GError(f"{folder} holds no tokenizer.json: pass a tokenizer folder, "
                       "e.g. RUN/tokenizer")
    try:
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    except Exception:  # transformers could not read the folder: fall back to the raw file
        return BareTokenizer(folder / "tokenizer.json")
