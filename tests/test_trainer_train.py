"""python -m trainer.train: a tiny real run, and the one-line errors for bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from trainer.train import main

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "space" / "zoo" / "seed000_19642.yaml"


@pytest.fixture
def spec(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CNNSEARCH_THREADS", "1")
    monkeypatch.delenv("CNNSEARCH_DATA", raising=False)
    dst = tmp_path / "net.yaml"
    shutil.copyfile(ZOO, dst)
    return dst


def test_a_tiny_run_prints_each_epoch_and_the_test_accuracy_and_writes_json(spec, capsys):
    assert main([str(spec), "--epochs", "2", "--train-limit", "256", "--seeds", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^seed [01]  epoch [12]/2  loss \d\.\d{4}  train .*img/s", out, re.M)) == 4
    last = re.search(r"^test accuracy: (\d+\.\d\d)% ± (\d+\.\d\d) \(2 seeds\)$", out, re.M)
    assert last is not None
    doc = json.loads((spec.parent / "net.result.json").read_text())
    assert doc["name"] == "seed000_19642" and doc["params"] == 19642 and doc["seeds"] == [0, 1]
    assert doc["train_images"] == 256 and doc["test_images"] == 10000 and doc["epochs"] == 2
    assert [r["status"] for r in doc["runs"]] == ["ok", "ok"]
    assert [len(r["epochs"]) for r in doc["runs"]] == [2, 2]
    accs = [100 * r["test_acc"] for r in doc["runs"]]
    assert f"{doc['test_accuracy_mean']:.2f}" == last.group(1) == f"{sum(accs) / 2:.2f}"
    assert f"{doc['test_accuracy_std']:.2f}" == last.group(2)
    assert doc["recipe"]["epochs"] == 2 and doc["recipe"]["lr"] == 0.01


def test_out_puts_the_json_elsewhere(spec, tmp_path, capsys):
    out = tmp_path / "r" / "x.json"
    out.parent.mkdir()
    assert main([str(spec), "--epochs", "1", "--train-limit", "128", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["runs"][0]["status"] == "ok"
    assert not (spec.parent / "net.result.json").exists()
    assert re.search(r"^test accuracy: \d+\.\d\d% ± 0\.00 \(1 seed\)$", capsys.readouterr().out, re.M)


@pytest.mark.parametrize("args, says", [
    (["{missing}"], "no such file"),
    (["{spec}", "--seeds", "0"], "--seeds must be >= 1"),
    (["{spec}", "--epochs", "x"], "--epochs must be an integer"),
    (["{spec}", "--bogus"], "unrecognized arguments: --bogus"),
    (["{spec}", "--data-dir", "{empty}"], "train-images-idx3-ubyte[.gz]: missing"),
    (["{spec}", "--device", "nonsense"], "--device"),
    (["{spec}", "--out", "{empty}/no/such/dir/r.json"], "no such folder"),
    (["{bad}"], "unknown key 'layerz'"),
], ids=["missing-spec", "seeds-0", "epochs-x", "unknown-flag", "empty-data-dir", "bad-device", "out-dir",
        "bad-spec"])
def test_bad_input_is_one_line_on_stderr_exit_2_and_nothing_written(spec, tmp_path, capsys, args, says):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad.yaml"
    bad.write_text("layerz: []\n")
    argv = [a.format(spec=spec, missing=tmp_path / "nope.yaml", empty=empty, bad=bad) for a in args]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and says in lines[0] and lines[0].startswith("error: ")
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("flag, want", [
    ([], None), (["--precision", "fp32"], "fp32"), (["--precision", "bf16"], "bf16"),
], ids=["auto", "fp32", "bf16"])
def test_precision_is_chosen_or_overridden_and_recorded(spec, capsys, flag, want):
    from trainer.loop import cpu_bf16_supported

    want = want or ("bf16" if cpu_bf16_supported() else "fp32")
    assert main([str(spec), "--epochs", "1", "--train-limit", "128", "--device", "cpu", *flag]) == 0
    assert f"on cpu in {want}\n" in capsys.readouterr().out
    doc = json.loads((spec.parent / "net.result.json").read_text())
    assert doc["precision"] == want and doc["runs"][0]["precision"] == want


def test_an_unknown_precision_flag_is_a_usage_error(spec, capsys):
    assert main([str(spec), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'fp16'" in err and len(err.splitlines()) == 1
