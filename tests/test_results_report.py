"""results.report: the Markdown report and every plot, for a real study and for a study with nothing to show."""

import struct

import optuna
import pytest
import results_helpers as rh

from results.report import PLOTS, main
from search.storage import get_storage


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return rh.tiny_study(tmp_path_factory)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    w, h = struct.unpack(">II", data[16:24])
    return w, h, len(data)


def test_report_writes_markdown_and_every_plot(tiny, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--storage", str(tiny.storage), "--study", rh.STUDY, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    for name in PLOTS.values():
        w, h, n = _png_size(out / name)
        assert w >= 400 and h >= 250 and n > 5000, (name, w, h, n)    # a drawn figure, not an empty file
        assert f"]({name})" in md                                       # and shown by the report
    best = tiny.load().best_trial
    assert f"Trial **{best.number}**" in md and f"{best.user_attrs['params']:,}" in md
    assert "Pareto" in md and "layers[0]" in md                         # the front and the per-layer table
    assert str(out / "report.md") in capsys.readouterr().out


def test_report_of_a_study_without_completed_trials_still_draws_every_plot(tmp_path):
    storage = tmp_path / "empty.log"
    study = optuna.create_study(study_name="nothing-yet", storage=get_storage(str(storage)))
    t = study.ask()
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    assert main(["--storage", str(storage), "--out", str(tmp_path / "r")]) == 0
    for name in PLOTS.values():
        assert _png_size(tmp_path / "r" / name)[2] > 1000
    md = (tmp_path / "r" / "report.md").read_text()
    assert "1 fail" in md and "No trial has completed yet" in md


def test_report_bad_input_is_one_line_exit_2(tiny, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for argv, needle in ([["--storage", str(tmp_path / "none.log"), "--out", str(tmp_path / "r")], "no study storage"],
                         [["--storage", str(tiny.storage), "--out", str(blocker)], "is a file"],
                         [["--storage", str(tiny.storage), "--study", "zzz", "--out", str(tmp_path / "r")],
                          "no study 'zzz'"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
