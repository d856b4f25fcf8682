"""`n2g run` (stages in order, resumable, TOML config) and `n2g status` on a tiny random model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from record_fixtures import save_tiny_model, write_corpus

from neuron2graph.cli import app

runner = CliRunner()


def test_run_stages_resume_and_status(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text(f'model = "{model}"\ncorpus = "{corpus}"\nlayers = "1"\nper_layer = 3\n'
                      'window = 16\nmax_tokens = 0\naugment = false\ndevice = "cpu"\n'
                      'stages = "record,build,eval,decode,explain,score,report"\n',
                      encoding="utf-8")
    args = ["run", str(out), "--config", str(config), "--quiet", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert [(r["stage"], r["status"]) for r in report] == [
        ("record", "done"), ("build", "done"), ("eval", "done"), ("decode", "done"),
        ("explain", "done"), ("score", "done"), ("report", "done")]
    assert report[1]["detail"] == "built 3, already done 0"
    assert report[3]["detail"] == "decoded 64, already done 0"
    assert report[4]["detail"].startswith("explained graph: ")
    assert len(list((out / "explain" / "explanations" / "tokens").glob("*.json"))) >= 1
    assert (out / "explain" / "table.md").is_file() and (out / "report" / "index.html").is_file()
    assert (out / "eval" / "table.md").is_file()
    assert len(list((out / "graphs" / "1").glob("*.json"))) == 3
    again = runner.invoke(app, args)  # idempotent: nothing redone
    assert again.exit_code == 0, again.output
    redo = json.loads(again.stdout)
    assert redo[0]["detail"] == "already recorded (same configuration)"
    assert redo[1]["detail"] == "built 0, already done 3"
    assert redo[3]["detail"] == "decoded 0, already done 64"
    assert redo[4]["detail"].startswith("explained graph: 0 now, ")  # explain/score: stages too
    assert redo[5]["detail"].startswith("scored 0, already done ")
    # A flag given on the command line wins over the file: one more unit per layer.
    more = runner.invoke(app, [*args, "--per-layer", "4", "--stages", "build"])
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)[0]["detail"] == "built 1, already done 3"
    status = runner.invoke(app, ["status", str(out), "--json"])
    assert status.exit_code == 0, status.output
    st = json.loads(status.stdout)
    assert st["stages"]["build"]["status"] == "complete"
    assert st["stages"]["build"]["layers"]["1"] == {"done": 4, "failed": 0, "pending": 0}
    for name in ("explain-graph", "explain-tokens", "score"):  # per layer like the others
        assert st["stages"][name]["status"] == "complete"
        assert st["stages"][name]["layers"]["1"]["done"] >= 1
    text = runner.invoke(app, ["status", str(out)])
    assert "build" in text.stdout and "4 done" in text.stdout


def test_run_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(tmp_path / "r"), "--stages", "build,fly",
                              "--layers", "0"])
    assert res.exit_code == 2 and "unknown stage 'fly'" in res.output
    res = runner.invoke(app, ["run", str(tmp_path / "r"), "--stages", "build"])
    assert res.exit_code == 2 and "no units chosen" in res.output
    res = runner.invoke(app, ["run", str(tmp_path / "r"), "--stages", "build", "--layers", "0"])
    assert res.exit_code == 2 and "add record to --stages" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text("modle = 'x'\n", encoding="utf-8")
    res = runner.invoke(app, ["run", str(tmp_path / "r"), "--config", str(bad)])
    assert res.exit_code == 2 and "unknown key 'modle'" in res.output
    res = runner.invoke(app, ["run", str(tmp_path / "r"), "--layers", "0", "--workers", "2"])
    assert res.exit_code == 2 and "--executor ray" in res.output


def test_run_layers_all_records_builds_and_decodes_every_layer(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    args = ["run", str(out), "--model", str(model), "--corpus", str(corpus), "--layers", "all",
            "--per-layer", "1", "--window", "16", "--max-tokens", "0", "--no-augment",
            "--device", "cpu", "--stages", "record,build,decode", "--quiet", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    n_layers = json.loads((out / "run.json").read_text())["n_layers"]
    assert n_layers >= 2
    assert json.loads((out / "run.json").read_text())["layers"] == list(range(n_layers))
    assert sorted(p.name for p in (out / "graphs").iterdir()) == [str(i) for i in range(n_layers)]
    report = json.loads(res.stdout)
    assert report[1]["detail"] == f"built {n_layers}, already done 0"
    again = runner.invoke(app, args)  # "all" resolves to the same layers: nothing redone
    assert again.exit_code == 0, again.output
    redo = json.loads(again.stdout)
    assert redo[0]["detail"] == "already recorded (same configuration)"
    assert redo[1]["detail"] == f"built 0, already done {n_layers}"


def test_every_layers_option_refuses_a_bad_value_in_one_line(tmp_path: Path) -> None:
    run_dir = str(tmp_path / "r")
    for cmd in (["record", "--out", run_dir], ["eval", run_dir], ["explain", run_dir],
                ["score", run_dir], ["decode"], ["find-neurons", "--token", "x"],
                ["compare-models", "-m", "a", "-m", "b"], ["run", run_dir]):
        res = runner.invoke(app, [*cmd, "--layers", "al"])
        assert res.exit_code == 2, (cmd, res.output)
        lines = res.output.strip().splitlines()
        assert lines == ["error: bad layer list 'al': write e.g. 0,1,2, 0-3, 0-3,10 or all"], cmd


def test_run_dtype_reaches_the_build_stage(tmp_path: Path) -> None:
    """`--dtype bf16` builds in bf16 (the stage's config says so); a later run with another dtype
    is refused in one line rather than mixing graphs of two precisions in one run."""
    model = save_tiny_model(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    args = ["run", str(out), "--model", str(model), "--corpus", str(corpus), "--layers", "1",
            "--per-layer", "2", "--window", "16", "--max-tokens", "0", "--no-augment",
            "--device", "cpu", "--quiet", "--json"]
    res = runner.invoke(app, [*args, "--stages", "record,build", "--dtype", "bf16"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[1]["detail"] == "built 2, already done 0"
    assert '"bf16"' in (out / "stages" / "build.json").read_text(encoding="utf-8")
    again = runner.invoke(app, [*args, "--stages", "build", "--dtype", "fp32"])
    assert again.exit_code != 0
    assert "dtype: 'bf16' -> 'fp32'" in again.output
    typo = runner.invoke(app, [*args, "--stages", "record,build", "--dtype", "bf61"])
    assert typo.exit_code != 0 and "unknown --dtype 'bf61'" in typo.output
