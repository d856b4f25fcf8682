"""The evaluation protocol on a fake run with a model-free graph builder.

The fake run's neuron `L:N` fires (act 2.0) on token `3 + N % 4` and weakly (0.4) on token 9;
neuron 0 of each layer is dead and neuron 1 has too few examples. The fake builder adds one
context-free path per firing token, so the protocol's plumbing (selection, split, resume,
exclusions, report) is tested without a model; tests/integration covers the real builder.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from neuron2graph.errors import N2GError
from neuron2graph.evaluate import protocol as P
from neuron2graph.evaluate.report import build_results, load_results, render_table, write_report
from neuron2graph.ids import NeuronId
from neuron2graph.n2g.graph import NeuronGraph
from neuron2graph.store.run import Example


def _example(window: int, ids: list[int], fire_on: int) -> Example:
    acts = [2.0 if t == fire_on else (0.4 if t == 9 else 0.0) for t in ids]
    return Example(window, ids, [f"w{t}" for t in ids], acts, max(acts))


@dataclass
class FakeRun:
    path: Path
    layers: list[int] = field(default_factory=lambda: [0, 1])
    n_neurons: int = 12
    manifest: dict[str, Any] = field(default_factory=lambda: {"model": "fake", "tokens": 1000})

    def _fire_on(self, nid: NeuronId) -> int:
        return 3 + nid.neuron % 4

    def a_max(self, nid: Any) -> float:
        return 0.0 if nid.neuron == 0 else 2.0

    def top_examples(self, nid: Any, k: int | None = None) -> list[Example]:
        if nid.neuron == 0:
            return []
        n = 5 if nid.neuron == 1 else 24
        f = self._fire_on(nid)
        out = [
            _example(100 * nid.layer + i, [1, 2, 9, f, (i % 7) + 10, f if i % 3 else 2], f)
            for i in range(n)
        ]
        return out[:k] if k is not None else out

    def sample_examples(self, nid: Any) -> list[Example]:
        f = self._fire_on(nid)
        # Window 100*layer is a top example: it must be left out of the false-firing text.
        windows = [100 * nid.layer, 5000, 5001, 5002]
        return [_example(w, [1, 9, f, 2, 7, 8, 5, 11], 5) for w in windows]

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path / "index.sqlite")


def fake_builder(calls: list[tuple[str, int]]) -> P.BuildFn:
    def build(sets: Sequence[P.TrainSet], method: str) -> list[NeuronGraph]:
        graphs = []
        for ts in sets:
            calls.append((method, len(ts.examples)))
            g = NeuronGraph(str(ts.nid), fold=method == "official")
            for ids in ts.examples:
                f = 3 + ts.nid.neuron % 4
                for t in ids:
                    if t == f:
                        g.add_path(f"w{t}", 1.0, [])
            graphs.append(g)
        return graphs

    return build


def test_selection_is_seeded_and_lists_exclusions(tmp_path: Path) -> None:
    run = FakeRun(tmp_path)
    cfg = P.EvalConfig(seed=0)
    a = P.select_neurons(run, cfg, layers=[0, 1], per_layer=4)
    b = P.select_neurons(run, cfg, layers=[0, 1], per_layer=4)
    assert a.selected == b.selected and len(a.selected) == 8
    assert all(n.neuron not in (0, 1) for n in a.selected)
    c = P.select_neurons(run, P.EvalConfig(seed=1), layers=[0, 1], per_layer=4)
    assert c.selected != a.selected
    # A larger per_layer extends the smaller draw (so a bigger run reuses finished neurons).
    big = P.select_neurons(run, cfg, layers=[0], per_layer=6)
    assert big.selected[:4] == a.selected[:4]
    # Asking for every neuron: the dead one and the short one are excluded, with reasons.
    full = P.select_neurons(run, cfg, layers=[0], per_layer=12)
    reasons = {e["neuron"]: e["reason"] for e in full.excluded}
    assert "never fires" in reasons["0:0"]
    assert "only 5 top examples" in reasons["0:1"]
    assert full.shortfall == {0: 2}


def test_explicit_neurons_and_bad_layers(tmp_path: Path) -> None:
    run = FakeRun(tmp_path)
    sel = P.select_neurons(run, P.EvalConfig(), neurons=[NeuronId(1, 5), NeuronId(1, 0)])
    assert sel.selected == [NeuronId(1, 5)]
    assert sel.excluded[0]["neuron"] == "1:0"
    with pytest.raises(N2GError, match="not recorded"):
        P.select_neurons(run, P.EvalConfig(), layers=[7])
    with pytest.raises(N2GError, match="out of range"):
        P.select_neurons(run, P.EvalConfig(), neurons=[NeuronId(0, 99)])


def test_min_firing_examples(tmp_path: Path) -> None:
    run = FakeRun(tmp_path)
    reason = P.why_not_alive(run, NeuronId(0, 4), P.EvalConfig(min_firing_examples=25))
    assert reason is not None and "examples fire" in reason


def test_split_is_deterministic_and_disjoint() -> None:
    nid = NeuronId(3, 41)
    tr, te = P.split_indices(20, 10, 0, nid)
    assert (tr, te) == P.split_indices(20, 10, 0, nid)
    assert sorted(tr + te) == list(range(20)) and len(tr) == 10
    assert P.split_indices(20, 10, 1, nid) != (tr, te)
    assert P.split_indices(20, 10, 0, NeuronId(3, 42)) != (tr, te)
    with pytest.raises(N2GError):
        P.split_indices(5, 10, 0, nid)


def test_protocol_end_to_end_and_resume(tmp_path: Path) -> None:
    run = FakeRun(tmp_path)
    cfg = P.EvalConfig(seed=0, batch_neurons=3)
    sel = P.select_neurons(run, cfg, layers=[0, 1], per_layer=3)
    calls: list[tuple[str, int]] = []
    out = P.run_protocol(run, sel, cfg, lambda: fake_builder(calls), progress=False)
    assert out.computed == 6 and out.reused == 0
    assert sorted({m for m, _ in calls}) == ["improved", "n2g", "official"]
    assert all(n == 10 for _, n in calls)  # the builder only ever sees the 10 train examples
    row = out.rows[0]
    assert set(row["train_windows"]).isdisjoint(row["test_windows"])
    n2g = row["methods"]["n2g"]
    # The fake graph fires on exactly the firing token: perfect firing scores.
    assert n2g["f1_firing"] == 1.0 and n2g["precision_firing"] == 1.0
    # Token lookup also learns the weak token 9 (0.4 < 0.5): it must not fire on it.
    assert row["methods"]["token"]["f1_firing"] == 1.0
    # False firing: 3 sample windows (the top-example window is excluded), the graph fires on
    # token f where the neuron (firing on 5 there) does not, except when f == 5.
    assert row["sample"]["n_windows"] == 3
    ff = n2g["false_firing"]
    assert ff["n_tokens"] == 24
    nid = NeuronId(row["layer"], row["neuron"])
    assert ff["n_false_firing"] == (0 if 3 + nid.neuron % 4 == 5 else 3)
    for method in ("n2g", "official"):
        assert (tmp_path / "eval" / "graphs" / method / str(nid.layer)
                / f"{nid.layer}_{nid.neuron}.json").is_file()
    assert not (tmp_path / "graphs").exists()  # never touches the full graphs of n2g build

    # Resume: one neuron's file deleted (as if killed before it finished): only it is redone.
    (tmp_path / "eval" / "neurons" / f"{nid.layer}_{nid.neuron}.json").unlink()
    calls.clear()
    again = P.run_protocol(run, sel, cfg, lambda: fake_builder(calls), progress=False)
    assert again.computed == 1 and again.reused == 5 and len(calls) == 3
    strip = ("seconds", "build_s", "predict_s")

    def clean(r: dict[str, Any]) -> str:
        r = json.loads(json.dumps(r))
        r.pop("seconds", None)
        r.pop("cpu_s", None)
        for m in r["methods"].values():
            for k in strip:
                m.pop(k, None)
        return json.dumps(r, sort_keys=True)

    assert [clean(r) for r in again.rows] == [clean(r) for r in out.rows]

    # Nothing left to do: the builder is not even created (no model load).
    def boom() -> P.BuildFn:
        raise AssertionError("builder created with nothing to build")

    assert P.run_protocol(run, sel, cfg, boom, progress=False).computed == 0

    # Other settings refuse to mix with these results unless --overwrite.
    with pytest.raises(N2GError, match=r"another config.*seed: 0 -> 1"):
        P.run_protocol(run, sel, P.EvalConfig(seed=1), boom, progress=False)
    db = run.db()
    assert db.execute("SELECT COUNT(*) FROM eval").fetchone()[0] == 6
    db.close()


def test_report_files_and_table(tmp_path: Path) -> None:
    run = FakeRun(tmp_path)
    cfg = P.EvalConfig(seed=0)
    sel = P.select_neurons(run, cfg, layers=[0, 1], per_layer=2)
    sel.excluded.append({"neuron": "0:0", "reason": "never fires"})
    out = P.run_protocol(run, sel, cfg, lambda: fake_builder([]), progress=False)
    results = build_results(run, sel, cfg, out, {"layers": [0, 1], "per_layer": 2})
    paths = write_report(tmp_path, results)
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    loaded = load_results(tmp_path)
    layer0 = loaded["aggregate"]["layers"]["0"]
    assert layer0["n_neurons"] == 2 and layer0["n_excluded"] >= 1
    assert layer0["methods"]["n2g"]["f1_firing"]["mean"] == 1.0
    table = render_table(tmp_path)
    assert "| 0 | 2 |" in table and "token lookup" in table and "False-firing" in table
    # The 5-gram lookup predicts nothing on some neurons: undefined precision is counted.
    assert "Excluded neurons:" in table
    with pytest.raises(N2GError, match="no evaluation"):
        render_table(tmp_path / "elsewhere")


def test_interleave_chunks_round_robin_over_layers() -> None:
    nids = [NeuronId(0, i) for i in range(5)] + [NeuronId(3, i) for i in range(2)]
    chunks = P.interleave_chunks(nids, 2)
    assert chunks == [
        [NeuronId(0, 0), NeuronId(0, 1)], [NeuronId(3, 0), NeuronId(3, 1)],
        [NeuronId(0, 2), NeuronId(0, 3)], [NeuronId(0, 4)],
    ]


def test_time_budget_and_failures_leave_neurons_for_a_rerun(tmp_path: Path) -> None:
    run = FakeRun(tmp_path)
    cfg = P.EvalConfig(seed=0, batch_neurons=2)
    sel = P.select_neurons(run, cfg, layers=[0, 1], per_layer=2)
    out = P.run_protocol(run, sel, cfg, lambda: fake_builder([]), progress=False, max_seconds=0)
    assert out.rows == [] and len(out.pending) == 4 and out.computed == 0

    def flaky() -> P.BuildFn:
        inner = fake_builder([])

        def build(sets: Sequence[P.TrainSet], method: str) -> list[NeuronGraph]:
            if sets[0].nid.layer == 1:
                raise RuntimeError("out of memory")
            return inner(sets, method)

        return build

    out = P.run_protocol(run, sel, cfg, flaky, progress=False)
    assert out.computed == 2 and [r["layer"] for r in out.rows] == [0, 0]
    assert len(out.failed) == 2 and "RuntimeError: out of memory" in out.failed[0]["reason"]
    assert out.pending == []
    results = build_results(run, sel, cfg, out, {})
    assert results["aggregate"]["layers"]["1"]["n_failed"] == 2
    assert "Failed neurons" in render_table_from(results)
    # The failed neurons were not saved: a re-run retries exactly them.
    again = P.run_protocol(run, sel, cfg, lambda: fake_builder([]), progress=False)
    assert again.computed == 2 and again.reused == 2 and not again.failed


def render_table_from(results: dict[str, Any]) -> str:
    from neuron2graph.evaluate.report import markdown_table

    return markdown_table(results)


def test_a_registered_predictor_reaches_protocol_report_and_table(tmp_path: Path) -> None:
    """One `register` call: the protocol scores it, the table has its column, the report its
    label, the plot its style. (The registry is restored afterwards.)"""
    from neuron2graph.evaluate import predictors as R
    from neuron2graph.evaluate.storage import eval_schema

    def fit(ids: Any, acts: Any, cfg: Any) -> Any:
        return lambda ex: [1.0] * len(ex.token_ids)  # "always fires"

    saved = dict(R.PREDICTORS)
    try:
        R.register(R.Predictor("always", "always fires", ("C4", "x", "-"), "always_f1_firing",
                               fit=fit))
        with pytest.raises(N2GError, match="registered twice"):
            R.register(R.PREDICTORS["always"])
        assert "always_f1_firing REAL" in eval_schema()
        run = FakeRun(tmp_path)
        cfg = P.EvalConfig(seed=0, official=False)
        sel = P.select_neurons(run, cfg, layers=[0], per_layer=2)
        out = P.run_protocol(run, sel, cfg, lambda: fake_builder([]), progress=False)
        row = out.rows[0]
        assert set(row["methods"]) == {"n2g", "improved", "token", "5gram", "always"}
        assert row["methods"]["always"]["recall_firing"] == 1.0
        db = run.db()
        f1 = db.execute("SELECT always_f1_firing FROM eval").fetchall()
        db.close()
        assert len(f1) == 2 and all(v is not None for (v,) in f1)
        results = build_results(run, sel, cfg, out, {})
        paths = write_report(tmp_path, results)
        assert "always fires" in paths["table"].read_text()
    finally:
        R.PREDICTORS.clear()
        R.PREDICTORS.update(saved)
