"""README's table of bad inputs, row by row: one line naming what and where, exit 2, no traceback, nothing written."""

import gzip
import shutil
import subprocess
import sys

import optuna
import pytest
from conftest import ROOT, TINY

from results.export import main as export_main
from search.run import main as search_main
from search.storage import get_storage
from space.describe import main as describe_main
from trainer.train import main as train_main

SEED = (ROOT / "space" / "zoo" / "seed000_19642.yaml").read_text()
SPECS = {
    "malformed YAML": ("layers: [{kind: conv, out: 4\n", "malformed YAML"),
    "unknown layer kind": (SEED.replace("kind: gap", "kind: globalpool"),
                           "layers[22]: unknown layer kind 'globalpool'"),
    "unknown key": (SEED.replace("{kind: maxpool, k: 2}", "{kind: maxpool, k: 2, size: 2}", 1),
                    "layers[6]: unknown key 'size'"),
    "zero channels": (SEED.replace("out: 32", "out: 0", 1), "layers[8]: out must be >= 1, got 0"),
    "negative kernel": (SEED.replace("out: 16, k: 1}", "out: 16, k: -1}"), "layers[16]: k must be >= 1, got -1"),
    "shapes that don't fit": (SEED.replace("{kind: conv, out: 16, k: 1}", "{kind: conv, out: 16, k: 9}"),
                              "layers[16]: kernel 9 is larger than its input 7x7"),
    "residual with mismatched shapes": (
        SEED.replace("- {kind: conv, out: 16, k: 1}",
                     "- kind: residual\n  layers:\n  - {kind: conv, out: 16, k: 1}"),
        "layers[16]: residual group maps 32x7x7 to 16x7x7"),
    "unknown optimizer": (SEED.replace("optimizer: sgd", "optimizer: rmsprop"),
                          "recipe: optimizer must be one of sgd, adam, adamw; got 'rmsprop'"),
    "unknown scheduler": (SEED.replace("scheduler: step", "scheduler: cyclic"),
                          "recipe: scheduler must be one of none, step, onecycle, cosine, multistep, plateau; "
                          "got 'cyclic'"),
}


def _one_line_exit_2(capsys, rc, needle):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


@pytest.mark.parametrize("case", list(SPECS))
@pytest.mark.parametrize("command", ["describe", "train"])
def test_a_bad_spec_is_one_line_and_exit_2(tmp_path, capsys, case, command):
    text, needle = SPECS[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    rc = describe_main([str(spec)]) if command == "describe" else train_main([str(spec), "--epochs", "1"])
    err = _one_line_exit_2(capsys, rc, needle)
    assert str(spec) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # nothing written


@pytest.mark.parametrize("argv, needle", [
    (["--budget", "100"], "--budget 100 is too small"),
    (["--budget", "twenty"], "argument --budget: expected a positive integer, got 'twenty'"),
    (["--budget", "5000", "--storage", "mongodb://db/x"], "--storage: unsupported storage URL"),
    (["--budget", "5000", "--storage", "postgresql://bob:hunter2@127.0.0.1:1/x"], "--storage: cannot open"),
])
def test_bad_search_flags_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    err = _one_line_exit_2(capsys, search_main(argv), needle)
    assert "hunter2" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_search_space_file_is_one_line_and_exit_2(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("optimizer: {choices: [sgd, lion]}\n")
    _one_line_exit_2(capsys, search_main(["--budget", "5000", "--space", str(space)]),
                     f"{space}: optimizer: 'lion' is not allowed")


def test_a_study_that_exists_with_another_budget_is_refused(tmp_path, capsys):
    storage = str(tmp_path / "s.log")
    optuna.create_study(study_name="s", storage=get_storage(storage)).set_user_attr("budget", 9000)
    _one_line_exit_2(capsys, search_main(["--budget", "5000", "--study-name", "s", "--storage", storage]),
                     "study 's' exists with budget 9000, not 5000")


@pytest.fixture
def data_copy(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (ROOT / "data" / "MNIST" / "raw").glob("train-*.gz"):
        shutil.copy(f, raw / f.name)
    return raw


@pytest.mark.parametrize("damage, needle", [
    ("missing", "train-labels-idx1-ubyte[.gz]: missing"),
    ("truncated", "train-labels-idx1-ubyte.gz: truncated"),
    ("corrupt", "train-labels-idx1-ubyte"),
])
def test_a_missing_truncated_or_corrupt_data_file_is_one_line_and_exit_2(tmp_path, capsys, data_copy, damage, needle):
    f = data_copy / "train-labels-idx1-ubyte.gz"
    if damage == "missing":
        f.unlink()
    elif damage == "truncated":
        f.write_bytes(f.read_bytes()[:1000])
    else:
        raw = bytearray(gzip.decompress(f.read_bytes()))
        raw[5000] ^= 0xFF
        f.write_bytes(gzip.compress(bytes(raw)))
    rc = search_main(["--budget", "5000", "--storage", str(tmp_path / "s.log"), "--out", str(tmp_path / "b.yaml"),
                      "--data-dir", str(tmp_path / "data"), *TINY])
    _one_line_exit_2(capsys, rc, needle)
    assert not (tmp_path / "b.yaml").exists()


def test_export_of_a_missing_study_is_one_line_and_exit_2(tmp_path, capsys):
    rc = export_main(["--storage", str(tmp_path / "none.log"), "--out", str(tmp_path / "b.yaml")])
    _one_line_exit_2(capsys, rc, "none.log")
    assert list(tmp_path.iterdir()) == []


def test_yaml_that_would_run_code_under_the_unsafe_loader_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    _one_line_exit_2(capsys, describe_main([str(spec)]), str(spec))
    assert not marker.exists()


def test_no_traceback_from_a_real_process():
    r = subprocess.run([sys.executable, "-m", "space.describe", "/nonexistent.yaml"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr
