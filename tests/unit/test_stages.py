"""The stage contract on a tiny torch-free stage: resume, refusal of a changed config, overwrite,
failures, time budget, and the manifest's compact per-unit completion."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.files import write_json_atomic
from neuron2graph.ids import NeuronId
from neuron2graph.stages import (
    ConfigChanged,
    LocalExecutor,
    Stage,
    WorkerSpec,
    WorkItem,
    config_hash,
    read_manifest,
    result_fields,
    run_stage,
    runtime,
    scope,
)
from neuron2graph.stages.manifest import parse_ranges, ranges
from neuron2graph.store.run import FORMAT, FORMAT_VERSION, Run

CALLS: list[str] = []


@dataclass(frozen=True)
class SquareConfig:
    units: tuple[int, ...] = scope((0, 1, 2, 3, 4))
    scale: float = 1.0
    fail_on: int | None = None
    block: int = runtime(2)


def out_file(run_dir: Path, nid: NeuronId) -> Path:
    return run_dir / "squares" / f"{nid.layer}_{nid.neuron}.json"


class SquareWorker:
    def __init__(self, config: SquareConfig, run_dir: Path) -> None:
        CALLS.append("worker")
        self.config, self.run_dir = config, run_dir

    def process(self, item: WorkItem) -> list[dict[str, Any]]:
        CALLS.append(str(item))
        rows = []
        for nid in item.nids():
            if nid.neuron == self.config.fail_on:
                raise ValueError(f"unit {nid} is bad")
            row = {"id": str(nid), "value": self.config.scale * nid.neuron ** 2}
            write_json_atomic(out_file(self.run_dir, nid), row)
            rows.append(row)
        return rows


class SquareStage(Stage[SquareConfig]):
    name = "square"

    def select(self, config: SquareConfig, run: Run) -> list[NeuronId]:
        return [run.check((0, u)) for u in config.units]

    def group(self, config: SquareConfig, units: list[NeuronId]) -> list[WorkItem]:
        u = tuple(n.neuron for n in units)
        return [WorkItem(0, u[i : i + config.block]) for i in range(0, len(u), config.block)]

    def make_worker(self, config: SquareConfig, run_dir: Path) -> SquareWorker:
        return SquareWorker(config, run_dir)

    def unit_file(self, run_dir: Path, nid: NeuronId) -> Path | None:
        return out_file(run_dir, nid)

    def clear(self, run: Run) -> None:
        for f in (run.path / "squares").glob("*.json"):
            f.unlink()


class LenientSquare(SquareStage):
    fail_fast = False


def make_run(path: Path) -> Path:
    path.mkdir()
    (path / "run.json").write_text(json.dumps({
        "format": FORMAT, "format_version": FORMAT_VERSION, "status": "complete",
        "layers": [0], "n_layers": 1, "n_neurons": 8}))
    return path


def test_hash_ignores_scope_and_runtime_fields() -> None:
    a, b = SquareConfig(), SquareConfig(units=(1,), block=7)
    assert result_fields(a) == {"scale": 1.0, "fail_on": None}
    assert config_hash(result_fields(a)) == config_hash(result_fields(b))
    assert config_hash(result_fields(a)) != config_hash(result_fields(SquareConfig(scale=2)))


def test_ranges_round_trip() -> None:
    assert ranges([7, 0, 1, 2, 3, 9, 10, 3]) == "0-3,7,9-10"
    assert parse_ranges("0-3,7,9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert ranges([]) == "" and parse_ranges("") == []


def test_resume_refuse_and_overwrite(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    CALLS.clear()
    out = run_stage(SquareStage(), SquareConfig(units=(0, 1, 2)), run_dir, progress=False)
    assert out.computed == 3 and not out.reused and out.rows[NeuronId(0, 2)]["value"] == 4
    manifest = read_manifest(run_dir, "square")
    assert manifest is not None and manifest.status == "complete"
    assert json.loads((run_dir / "stages" / "square.json").read_text())["done"] == {"0": "0-2"}
    # More units, same settings: only the new ones run, in blocks; the old ones are reused.
    CALLS.clear()
    out = run_stage(SquareStage(), SquareConfig(), run_dir, progress=False)
    assert CALLS == ["worker", "0:3,0:4"] and len(out.reused) == 3 and out.computed == 2
    # Nothing to do: no worker is built (no model loaded).
    CALLS.clear()
    assert run_stage(SquareStage(), SquareConfig(), run_dir, progress=False).computed == 0
    assert CALLS == []
    # A vanished file is redone even though the manifest lists it.
    out_file(run_dir, NeuronId(0, 1)).unlink()
    out = run_stage(SquareStage(), SquareConfig(), run_dir, progress=False)
    assert list(out.rows) == [NeuronId(0, 1)]
    # Another setting that changes results: refused in one line naming the field.
    with pytest.raises(ConfigChanged) as info:
        run_stage(SquareStage(), SquareConfig(scale=2.0), run_dir, progress=False)
    message = str(info.value)
    assert "\n" not in message and "scale: 1.0 -> 2.0" in message and "--overwrite" in message
    assert json.loads(out_file(run_dir, NeuronId(0, 4)).read_text())["value"] == 16  # kept
    # A runtime field (block size) is not a change.
    assert run_stage(SquareStage(), SquareConfig(block=5), run_dir, progress=False).computed == 0
    # --overwrite redoes everything with the new setting and forgets the old units.
    out = run_stage(SquareStage(), SquareConfig(units=(4,), scale=2.0), run_dir, overwrite=True,
                    progress=False)
    assert out.computed == 1 and not out.reused
    assert not out_file(run_dir, NeuronId(0, 0)).exists()
    assert json.loads(out_file(run_dir, NeuronId(0, 4)).read_text())["value"] == 32
    manifest = read_manifest(run_dir, "square")
    assert manifest is not None and manifest.config["scale"] == 2.0 and manifest.n_done() == 1


def test_failures_stop_or_continue(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    with pytest.raises(ValueError, match="unit 0:3 is bad"):
        run_stage(SquareStage(), SquareConfig(fail_on=3), run_dir, progress=False)
    manifest = read_manifest(run_dir, "square")
    assert manifest is not None and manifest.n_done() == 2 and "0:3" in manifest.failed
    run_dir2 = make_run(tmp_path / "run2")
    out = run_stage(LenientSquare(), SquareConfig(fail_on=3), run_dir2, progress=False)
    assert sorted(n.neuron for n in out.rows) == [0, 1, 4]
    assert [f["neuron"] for f in out.failed] == ["0:2", "0:3"]  # the whole block failed
    manifest = read_manifest(run_dir2, "square")
    assert manifest is not None and manifest.status == "partial"


def test_time_budget_leaves_pending(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    out = run_stage(SquareStage(), SquareConfig(), run_dir, progress=False, max_seconds=0)
    assert out.computed == 0 and len(out.pending) == 5
    assert read_manifest(run_dir, "square").status == "partial"  # type: ignore[union-attr]


def test_corrupt_manifest_and_plan_errors(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    (run_dir / "stages").mkdir()
    (run_dir / "stages" / "square.json").write_text("{oops")
    with pytest.raises(N2GError, match="corrupt: pass --overwrite"):
        run_stage(SquareStage(), SquareConfig(), run_dir, progress=False)
    assert run_stage(SquareStage(), SquareConfig(), run_dir, overwrite=True,
                     progress=False).computed == 5


def test_worker_spec_and_items_pickle(tmp_path: Path) -> None:
    """What an executor sends to another process must pickle (a Ray executor relies on it)."""
    run_dir = make_run(tmp_path / "run")
    spec = WorkerSpec(SquareStage(), SquareConfig(scale=3.0), run_dir)
    spec2 = pickle.loads(pickle.dumps(spec))
    items = pickle.loads(pickle.dumps([WorkItem(0, (1, 2))]))
    results = list(LocalExecutor().run(spec2, items))
    assert [r.rows for r in results] == [[{"id": "0:1", "value": 3.0},
                                          {"id": "0:2", "value": 12.0}]]


def test_eval_table_is_rebuilt_from_unit_files(tmp_path: Path) -> None:
    from neuron2graph.evaluate import storage
    from neuron2graph.store.db import connect

    run_dir = make_run(tmp_path / "run")
    row = {"layer": 0, "neuron": 3, "seed": 0, "test": {"n_tokens": 40, "n_firing": 4},
           "methods": {"n2g": {"f1_firing": 0.5, "n_nodes": 7}, "token": {"f1_firing": 0.25}}}
    storage.save_neuron(run_dir, None, row)  # a file only: no SQLite write from the unit's work
    conn = connect(run_dir)
    assert storage.rebuild_table(run_dir, conn) == 1
    got = conn.execute("SELECT layer, neuron, f1_firing, token_f1_firing, n_nodes FROM eval")
    assert got.fetchall() == [(0, 3, 0.5, 0.25, 7)]
    conn.close()


def test_front_page_renders_the_eval_markdown_as_tables() -> None:
    from neuron2graph.web.overview import markdown_blocks

    text = ("Table 1: top-20 examples.\n\n| Layer | F1 |\n|---|---|\n| 0 | 0.75 |\n| all | 0.40 |"
            "\n\n[n]: undefined values\nExcluded: 0.")
    blocks = markdown_blocks(text)
    assert blocks == [
        {"kind": "text", "text": "Table 1: top-20 examples."},
        {"kind": "table", "head": ["Layer", "F1"], "rows": [["0", "0.75"], ["all", "0.40"]]},
        {"kind": "text", "text": "[n]: undefined values Excluded: 0."},
    ]
