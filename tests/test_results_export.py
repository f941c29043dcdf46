"""results.export / results.verify: a trial as a complete spec, its round trip, and the checks of --verify."""

import dataclasses

import optuna
import pytest
import results_helpers as rh
import yaml

from results.export import main
from results.verify import main as verify_main
from results.verify import tolerance_for, verify
from search.study import best as _best
from space.analysis import count_params
from space.build import build
from space.io import load, loads


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return rh.tiny_study(tmp_path_factory)


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    return err


def test_export_round_trip_gives_the_trained_spec_with_metrics_and_provenance(tiny, tmp_path):
    out = tmp_path / "best.yaml"
    assert main(["--storage", str(tiny.storage), "--out", str(out)]) == 0
    study = tiny.load()
    best = _best(study.get_trials())
    trained = loads(best.user_attrs["spec"])          # what the objective trained
    spec = load(out)
    assert spec == trained                              # same layers, same recipe (info is not compared)
    assert spec.recipe == trained.recipe
    assert count_params(spec) == best.user_attrs["params"] <= rh.BUDGET
    assert sum(p.numel() for p in build(spec).parameters()) == best.user_attrs["params"]
    m, prov = spec.info["metrics"], spec.info["provenance"]
    assert m["val_acc"] == pytest.approx(best.value) and m["params"] == best.user_attrs["params"]
    assert m["val_acc_curve"] == best.user_attrs["val_acc_curve"]
    assert prov["study"] == rh.STUDY and prov["trial"] == best.number and prov["exported"]
    assert {"python", "torch", "optuna"} <= set(prov["versions"])
    assert spec.info["search"]["budget"] == rh.BUDGET and spec.info["search"]["epochs"] == 1
    text = out.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert f"{best.user_attrs['params']:,} parameters" in header[0]
    assert any("conv" in line and "layers[0]" in line for line in header)      # the per-layer table
    assert any(f"trial {best.number}" in line for line in header)
    assert loads(text).info == spec.info                                         # the header is only comments
    assert yaml.safe_load(text)["name"] == spec.name


def test_export_trial_n_and_max_params_choose_the_asked_trial(tiny, tmp_path):
    study = tiny.load()
    done = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.user_attrs["params"])
    smallest = done[0]
    assert main(["--storage", str(tiny.storage), "--study", rh.STUDY, "--trial", str(smallest.number),
                 "--out", str(tmp_path / "n.yaml")]) == 0
    assert load(tmp_path / "n.yaml").info["provenance"]["trial"] == smallest.number
    cap = smallest.user_attrs["params"]
    assert main(["--storage", str(tiny.storage), "--max-params", str(cap), "--out", str(tmp_path / "m.yaml")]) == 0
    got = load(tmp_path / "m.yaml")
    assert got.info["metrics"]["params"] <= cap
    under = [t for t in done if t.user_attrs["params"] <= cap]
    assert got.info["metrics"]["val_acc"] == pytest.approx(max(t.value for t in under))


@pytest.mark.parametrize("case, needle", [
    ("no-storage", "no study storage"),
    ("no-study", "no study 'nope'"),
    ("no-trial", "no trial 999"),
    ("tiny-cap", "no completed trial with at most 10 parameters"),
    ("out-is-dir", "is a directory"),
    ("unwritable", "cannot write"),
    ("bad-flag", "--trial"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny, tmp_path, capsys, case, needle):
    s = str(tiny.storage)
    out = tmp_path / "best.yaml"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = {
        "no-storage": ["--storage", str(tmp_path / "missing.log"), "--out", str(out)],
        "no-study": ["--storage", s, "--study", "nope", "--out", str(out)],
        "no-trial": ["--storage", s, "--trial", "999", "--out", str(out)],
        "tiny-cap": ["--storage", s, "--max-params", "10", "--out", str(out)],
        "out-is-dir": ["--storage", s, "--out", str(tmp_path)],
        "unwritable": ["--storage", s, "--out", str(blocker / "best.yaml")],   # a file where a folder should be
        "bad-flag": ["--storage", s, "--trial", "x", "--out", str(out)],
    }[case]
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    assert needle in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]           # no spec, no temporary file
    assert not (tmp_path / "missing.log").exists()                         # a missing storage is not created


def test_verify_retrains_and_reproduces_the_recorded_accuracy(tiny, tmp_path, capsys):
    out = tmp_path / "best.yaml"
    with rh.watch_test_files() as opened:              # re-training is search-side: no test files either
        rc = main(["--storage", str(tiny.storage), "--out", str(out), "--verify",
                   "--data-dir", str(tiny.data_dir), "--device", "cpu"])
    assert rc == 0 and opened == []
    text = capsys.readouterr().out
    assert "verified" in text and "NOT" not in text
    spec = load(out)
    rep = spec.info["metrics"]["reproduced"]
    assert abs(rep["diff"]) <= rep["tolerance"]
    assert rep["val_acc"] == pytest.approx(spec.info["metrics"]["val_acc"], abs=rep["tolerance"])


def test_verify_catches_a_tampered_parameter_count_without_training(tiny, tmp_path, capsys):
    out = tmp_path / "best.yaml"
    assert main(["--storage", str(tiny.storage), "--out", str(out)]) == 0
    spec = load(out)
    true = spec.info["metrics"]["params"]
    text = out.read_text().replace(f"params: {true}\n", f"params: {true - 1}\n")
    assert text != out.read_text()
    (tmp_path / "tampered.yaml").write_text(text)
    capsys.readouterr()
    assert verify_main([str(tmp_path / "tampered.yaml"), "--data-dir", "/nonexistent"]) == 1  # fails before data
    got = capsys.readouterr().out
    assert f"recorded {true - 1:,}" in got and f"has {true:,}" in got and "NOT verified" in got
    v = verify(loads(text), retrain=False)
    assert not v.ok and v.params_built == true and v.params_recorded == true - 1


def test_export_verify_fails_on_a_study_whose_record_was_tampered(tiny, tmp_path, capsys):
    """A trial whose recorded parameter count disagrees with its spec: --verify exits 1."""
    from search.storage import get_storage

    best = _best(tiny.load().get_trials())
    storage = tmp_path / "t.log"
    study = optuna.create_study(study_name="tampered", storage=get_storage(str(storage)), direction="maximize")
    for k, v in tiny.load().user_attrs.items():
        study.set_user_attr(k, v)
    attrs = dict(best.user_attrs) | {"params": best.user_attrs["params"] + 7}
    study.add_trial(optuna.trial.create_trial(value=best.value, params=best.params,
                                              distributions=best.distributions, user_attrs=attrs,
                                              intermediate_values=best.intermediate_values))
    rc = main(["--storage", str(storage), "--out", str(tmp_path / "b.yaml"), "--verify", "--device", "cpu"])
    assert rc == 1
    assert "parameter count mismatch" in capsys.readouterr().out


def test_verify_flags_an_accuracy_outside_the_tolerance(monkeypatch, tiny):
    import results.verify as rv

    spec = loads(_best(tiny.load().get_trials()).user_attrs["spec"])
    spec = dataclasses.replace(spec, info={"metrics": {"params": count_params(spec), "val_acc": 0.99},
                                           "search": {"val": 5000}})
    monkeypatch.setattr(rv, "retrain_val", lambda *a, **k: (0.95, 1.0, "cpu", 5000))
    v = verify(spec)
    assert not v.ok and "not reproduced" in v.problems[0]
    monkeypatch.setattr(rv, "retrain_val", lambda *a, **k: (0.9885, 1.0, "cpu", 5000))
    assert verify(spec).ok


def test_tolerance_is_a_few_standard_errors():
    assert tolerance_for(0.99, 5000) == pytest.approx(3 * (2 * 0.99 * 0.01 / 5000) ** 0.5)
    assert tolerance_for(0.999, 100000) == 0.002                                  # the floor
    assert tolerance_for(0.5, 300) > tolerance_for(0.5, 3000)


@pytest.mark.postgres
def test_export_and_report_read_a_postgresql_study(pg_url, tiny, tmp_path):
    import uuid

    from results.report import main as report_main
    from search.storage import get_storage

    name = f"results-{uuid.uuid4().hex[:8]}"
    optuna.copy_study(from_study_name=rh.STUDY, from_storage=get_storage(str(tiny.storage)),
                      to_storage=get_storage(pg_url), to_study_name=name)
    out = tmp_path / "best.yaml"
    assert main(["--storage", pg_url, "--study", name, "--out", str(out)]) == 0
    spec = load(out)
    trained = loads(_best(tiny.load().get_trials()).user_attrs["spec"])
    assert (spec.layers, spec.recipe) == (trained.layers, trained.recipe)
    assert spec.info["provenance"]["study"] == name and spec.name == f"{name}-t{spec.info['provenance']['trial']}"
    assert report_main(["--storage", pg_url, "--study", name, "--out", str(tmp_path / "r")]) == 0
