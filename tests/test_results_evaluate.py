"""results.evaluate: train on train+validation, measure the test set once per seed, write it back."""

import dataclasses
import json
import statistics

import pytest
import results_helpers as rh

from results._common import render
from results.evaluate import json_path, main
from results.export import main as export_main
from space.analysis import count_params
from space.io import load, loads


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return rh.tiny_study(tmp_path_factory)


FAST = loads("""
layers:
- {kind: conv, out: 8, k: 3, stride: 2}
- {kind: bn}
- {kind: act}
- {kind: conv, out: 16, k: 3, stride: 2}
- {kind: bn}
- {kind: act}
- {kind: gap}
- {kind: linear, out: 10}
""")


@pytest.fixture
def exported(tiny, tmp_path):
    """An exported spec of the tiny search, with its network swapped for a faster one (this is about the
    evaluation's bookkeeping, and 2 seeds x 10,000 test images must stay quick on two CPU cores)."""
    out = tmp_path / "best.yaml"
    assert export_main(["--storage", str(tiny.storage), "--out", str(out)]) == 0
    spec = load(out)
    metrics = dict(spec.info["metrics"]) | {"params": count_params(FAST)}
    fast = dataclasses.replace(spec, layers=FAST.layers, info=dict(spec.info) | {"metrics": metrics})
    out.write_text(render(fast))
    return out


def test_evaluate_writes_a_test_section_and_a_json_beside_the_spec(exported, capsys):
    before = load(exported)
    with rh.watch_test_files() as opened:
        rc = main([str(exported), "--seeds", "2", "--epochs", "1", "--train-limit", "300", "--device", "cpu"])
    assert rc == 0
    assert any("t10k-images" in p for p in opened)          # this, and only this, reads the test set
    after = load(exported)
    assert after == before                                    # same network and recipe
    assert {k: v for k, v in after.info.items() if k != "test"} == before.info
    test = after.info["test"]
    accs = [r["acc"] for r in test["per_seed"]]
    assert [r["seed"] for r in test["per_seed"]] == [before.recipe.seed, before.recipe.seed + 1]
    assert all(0.0 <= a <= 1.0 for a in accs)
    assert test["acc_mean"] == pytest.approx(statistics.fmean(accs), abs=1e-5)
    assert test["acc_std"] == pytest.approx(statistics.stdev(accs), abs=1e-5)
    assert test["test_images"] == 10000 and test["train_images"] == 300 and test["epochs"] == 1
    assert {"torch", "optuna"} <= set(test["versions"])
    assert any(line.startswith("# test accuracy") for line in exported.read_text().splitlines())
    summary = json.loads(json_path(exported).read_text())
    assert summary["test"]["per_seed"] == test["per_seed"] and summary["params"] == before.info["metrics"]["params"]
    assert "test accuracy" in capsys.readouterr().out


def test_evaluate_refuses_a_second_look_at_the_test_set(exported, capsys):
    text = exported.read_text().replace("\nsearch:", "\ntest: {acc_mean: 0.99, date: yesterday}\nsearch:")
    exported.write_text(text)
    assert main([str(exported), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already evaluated" in err and "--force" in err
    assert exported.read_text() == text and not json_path(exported).exists()


@pytest.mark.parametrize("case, needle", [
    ("missing", "no such file"),
    ("seeds", "--seeds"),
    ("device", "--device"),
    ("no-test-files", "t10k"),
])
def test_evaluate_bad_input_is_one_line_exit_2_and_writes_nothing(exported, tiny, tmp_path, capsys, case, needle):
    before = exported.read_text()
    argv = {
        "missing": [str(tmp_path / "nope.yaml")],
        "seeds": [str(exported), "--seeds", "0"],
        "device": [str(exported), "--device", "tpu"],
        "no-test-files": [str(exported), "--data-dir", str(tiny.data_dir), "--epochs", "1", "--train-limit", "300",
                          "--seeds", "1", "--device", "cpu"],
    }[case]
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and needle in err, err
    assert exported.read_text() == before and not json_path(exported).exists()
