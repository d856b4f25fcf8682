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
    # A flag given on the command line wins over the file: one more unit per layer.
    more = runner.invoke(app, [*args, "--per-layer", "4", "--stages", "build"])
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)[0]["detail"] == "built 1, already done 3"
    status = runner.invoke(app, ["status", str(out), "--json"])
    assert status.exit_code == 0, status.output
    st = json.loads(status.stdout)
    assert st["stages"]["build"]["status"] == "complete"
    assert st["stages"]["build"]["layers"]["1"] == {"done": 4, "failed": 0, "pending": 0}
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
