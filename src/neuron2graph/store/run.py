"""A run directory, opened for reading (and for the small writes later stages make).

Every stage reaches the files of a run through `Run` (see docs/run-format.md), never by guessing
paths, so the layout can change in one place. `Run.open` validates the folder up front and turns
every way it can be wrong (missing, not a run, foreign or corrupt manifest, another format
version, a recording that never finished) into one actionable line. Nothing here imports torch:
the browser opens runs in a torch-free process.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuron2graph.errors import N2GError
from neuron2graph.files import write_json_atomic
from neuron2graph.ids import NeuronId
from neuron2graph.store import db as dbmod
from neuron2graph.store import layout
from neuron2graph.store.tokenizer import load_tokenizer

FORMAT = "neuron2graph/run"
FORMAT_VERSION = 1
MANIFEST = layout.MANIFEST
RECORD_DIR = layout.RECORD_DIR
GRAPHS_DIR = layout.GRAPHS_DIR

NidLike = NeuronId | str | tuple[int, int]


def as_nid(nid: NidLike) -> NeuronId:
    if isinstance(nid, NeuronId):
        return nid
    if isinstance(nid, str):
        return NeuronId.parse(nid)
    layer, neuron = nid
    return NeuronId(int(layer), int(neuron))


layer_file = layout.layer_file
sample_file = layout.sample_file


@dataclass
class Example:
    """One window of text with one neuron's activation on each of its tokens."""

    window: int
    """Window index in the corpus stream; windows never overlap: distinct index = distinct text."""
    token_ids: list[int]
    tokens: list[str]
    acts: list[float]
    """The neuron's activation on each token; 0.0 on a BOS the corpus added at position 0 (BOS
    activations are attention-sink artefacts, excluded from every statistic and from max_act)."""
    max_act: float
    bos: bool = False
    """True when token 0 is the BOS the corpus added (its activation is then reported as 0.0)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and validate run.json; raise one-line N2GErrors for every way it can be wrong."""
    if not path.exists():
        raise N2GError(
            f"no such run directory {path}: check the path or create one with n2g record"
        )
    if not path.is_dir():
        raise N2GError(f"{path} is a file, not a run directory: pass the folder n2g record wrote")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise N2GError(
            f"{path} is not a neuron2graph run (no {MANIFEST}): create one with n2g record"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise N2GError(
            f"{manifest_path} is corrupt (not valid JSON): re-record with n2g record --overwrite"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise N2GError(
            f"{manifest_path} is not a neuron2graph run manifest: point at a folder made by "
            "n2g record"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise N2GError(
            f"{path} has run format version {version}, this neuron2graph reads version "
            f"{FORMAT_VERSION}: re-record it with n2g record --overwrite"
        )
    return manifest


def create_run(path: Path, fields: dict[str, Any]) -> Run:
    """Write a new run manifest (format fields added) and open the run; for stages that start a
    run without a recording (a decode-only run). The store owns run.json's format."""
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **fields}
    write_json_atomic(layout.manifest_file(path), manifest)
    return Run.open(path, allow_incomplete=True)


class Run:
    """Reader (and light writer) of one run directory. Create one with `Run.open(path)`."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._tokenizer: Any = None
        self._stats: dict[int, dict[str, np.ndarray]] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, *, allow_incomplete: bool = False) -> Run:
        path = Path(path).expanduser()
        manifest = read_manifest(path)
        if manifest.get("status") != "complete" and not allow_incomplete:
            raise N2GError(
                f"{path} is a recording that has not finished: re-run the same n2g record "
                "command to resume it"
            )
        return cls(path, manifest)

    # --------------------------------------------------------------- properties
    @property
    def layers(self) -> list[int]:
        return sorted(int(x) for x in self.manifest.get("layers", []))

    @property
    def n_neurons(self) -> int:
        """Units per layer (named for the first unit kind; see `units`)."""
        return int(self.manifest["n_neurons"])

    @property
    def units(self) -> str:
        """The unit kind the run holds (docs/units.md); runs from before unit kinds: neurons."""
        return str(self.manifest.get("units") or "neurons")

    @property
    def unit_site(self) -> str:
        """The site prefix of the run's qualified unit ids (`mlp/3:41`)."""
        return str(self.manifest.get("unit_site") or "mlp")

    @property
    def n_layers(self) -> int:
        return int(self.manifest["n_layers"])

    @property
    def window_len(self) -> int:
        """Tokens per window (0 for a run without a recording, e.g. decode-only)."""
        return int((self.manifest.get("record") or {}).get("window", 0))

    @property
    def top_k(self) -> int:
        return int((self.manifest.get("record") or {}).get("top_k", 0))

    def check(self, nid: NidLike) -> NeuronId:
        """Parse `nid` and check that this run recorded it."""
        nid = as_nid(nid)
        if nid.layer not in self.layers:
            have = ",".join(str(x) for x in self.layers)
            raise N2GError(
                f"layer {nid.layer} was not recorded in {self.path} (recorded layers: {have}): "
                f"record it with n2g record --layers {nid.layer}"
            )
        if not 0 <= nid.neuron < self.n_neurons:
            raise N2GError(
                f"neuron {nid} is out of range: layers of this run have neurons "
                f"0..{self.n_neurons - 1}"
            )
        return nid

    # ------------------------------------------------------------------- arrays
    def _slice(self, file: Path, name: str, index: int | None = None) -> np.ndarray:
        from safetensors import safe_open

        if not file.is_file():
            raise N2GError(f"{file} is missing: the run is damaged, re-record it with --overwrite")
        with safe_open(str(file), framework="numpy") as fh:
            if index is None:
                return np.asarray(fh.get_tensor(name))
            return np.asarray(fh.get_slice(name)[index : index + 1])[0]

    def stats(self, layer: int) -> dict[str, np.ndarray]:
        """Per-neuron statistics of one layer: max, min, mean, density, firing_rate, hist ..."""
        self.check((layer, 0))
        if layer not in self._stats:
            keys = ("max", "min", "mean", "density", "firing_rate", "firing_rate_err", "n_pos",
                    "hist")
            file = layer_file(self.path, layer)
            out = {k: self._slice(file, k) for k in keys}
            out["hist_edges"] = self.hist_edges()
            self._stats[layer] = out
        return self._stats[layer]

    def hist_edges(self) -> np.ndarray:
        return self._slice(sample_file(self.path), "hist_edges")

    def a_max(self, nid: NidLike) -> float:
        nid = self.check(nid)
        return float(self.stats(nid.layer)["max"][nid.neuron])

    def neuron_stats(self, nid: NidLike) -> dict[str, Any]:
        nid = self.check(nid)
        s = self.stats(nid.layer)
        n = nid.neuron
        return {
            "neuron": str(nid),
            "max_act": float(s["max"][n]),
            "min_act": float(s["min"][n]),
            "mean_act": float(s["mean"][n]),
            "density": float(s["density"][n]),
            "firing_rate": float(s["firing_rate"][n]),
            "firing_rate_err": float(s["firing_rate_err"][n]),
            "n_positive": int(s["n_pos"][n]),
            "tokens": int(self.manifest.get("tokens", 0)),
            "hist": s["hist"][n].tolist(),
            "hist_edges": s["hist_edges"].tolist(),
        }

    def top_examples(self, nid: NidLike, k: int | None = None) -> list[Example]:
        """The neuron's top windows by max activation, best first (ties: earlier window first)."""
        nid = self.check(nid)
        file = layer_file(self.path, nid.layer)
        window = self._slice(file, "top_window", nid.neuron)
        lengths = self._slice(file, "top_len", nid.neuron)
        tokens = self._slice(file, "top_tokens", nid.neuron)
        acts = self._slice(file, "top_acts", nid.neuron)
        maxes = self._slice(file, "top_max", nid.neuron)
        out: list[Example] = []
        for i in range(len(window)):
            if window[i] < 0 or (k is not None and len(out) >= k):
                break
            out.append(self._example(int(window[i]), tokens[i], acts[i], int(lengths[i]),
                                     float(maxes[i])))
        return out

    def _sample_meta(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        file = sample_file(self.path)
        return self._slice(file, "window"), self._slice(file, "len"), self._slice(file, "tokens")

    def sample_examples(self, nid: NidLike) -> list[Example]:
        """The uniform random sample of windows (same windows for every neuron), in corpus order."""
        nid = self.check(nid)
        windows, lengths, tokens = self._sample_meta()
        file = layer_file(self.path, nid.layer)
        acts = self._sample_acts(file, nid.neuron, tokens.shape)
        maxes = self._slice(file, "sample_max", nid.neuron)
        return [
            self._example(int(windows[i]), tokens[i], acts[i], int(lengths[i]), float(maxes[i]))
            for i in range(len(windows))
        ]

    def _sample_acts(self, file: Path, unit: int, shape: tuple[int, ...]) -> np.ndarray:
        """One unit's sample activations `[S, T]`, from the dense array or the sparse CSR."""
        from safetensors import safe_open

        with safe_open(str(file), framework="numpy") as fh:
            if "sample_ptr" not in fh.keys():  # noqa: SIM118 (safe_open has no __contains__)
                return np.asarray(fh.get_slice("sample_acts")[unit : unit + 1])[0]
            a, b = (int(x) for x in fh.get_slice("sample_ptr")[unit : unit + 2])
            rows = np.asarray(fh.get_slice("sample_row")[a:b])
            pos = np.asarray(fh.get_slice("sample_pos")[a:b])
            dense = np.zeros(shape, dtype=np.float16)
            dense[rows, pos.astype(np.int64)] = np.asarray(fh.get_slice("sample_val")[a:b])
            return dense

    def quantile_examples(self, nid: NidLike, n: int = 10) -> list[Example]:
        """`n` sample windows at evenly spaced quantiles (0 .. 1) of the neuron's window max."""
        sample = self.sample_examples(nid)
        if not sample or n <= 0:
            return []
        order = sorted(range(len(sample)), key=lambda i: (sample[i].max_act, sample[i].window))
        picks = np.linspace(0, len(order) - 1, num=min(n, len(order))).round().astype(int)
        return [sample[order[int(p)]] for p in picks]

    def _example(self, window: int, tokens: np.ndarray, acts: np.ndarray, length: int,
                 max_act: float) -> Example:
        ids = [int(t) for t in tokens[:length]]
        values = [float(a) for a in np.asarray(acts[:length], dtype=np.float32)]
        bos_id = self.manifest.get("bos_token_id")
        bos = bool(ids) and bos_id is not None and ids[0] == int(bos_id)
        if bos:
            values[0] = 0.0
        return Example(window=window, token_ids=ids, tokens=self.pieces(ids), acts=values,
                       max_act=max_act, bos=bos)

    # ----------------------------------------------------------------- tokenizer
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.path)
        return self._tokenizer

    def pieces(self, token_ids: Any) -> list[str]:
        from neuron2graph.tokens import token_pieces

        return token_pieces(self.tokenizer(), [int(i) for i in token_ids])

    # -------------------------------------------------------------------- graphs
    def graph_path(self, nid: NidLike) -> Path:
        """Where the unit's graph file lives (reading it is the n2g package's job:
        `neuron2graph.n2g.graph_io.load_graph`; the store knows paths, not graphs)."""
        return layout.graph_file(self.path, as_nid(nid))

    # ------------------------------------------------------------------------ db
    def db(self) -> sqlite3.Connection:
        """A new connection to RUN/index.sqlite (WAL); the caller closes it."""
        return dbmod.connect(self.path)

    def update_manifest(self, **fields: Any) -> None:
        """Merge top-level fields into run.json atomically (stages note what they added)."""
        self.manifest.update(fields)
        write_json_atomic(self.path / MANIFEST, self.manifest)
