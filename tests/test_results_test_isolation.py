"""Nothing in the search reads the test set: a real search runs from a folder without the t10k files, and an
audit hook that records every open() of a t10k path sees none (while it does see the final evaluation's)."""

import shutil

import optuna
import pytest
import results_helpers as rh
from conftest import ROOT

from trainer.data import load_test


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return rh.tiny_study(tmp_path_factory)


def test_the_search_runs_without_test_files_and_never_opens_one(tiny):
    files = sorted(p.name for p in tiny.data_dir.rglob("*") if p.is_file())
    assert files and not [f for f in files if "t10k" in f]
    done = tiny.load().get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 3                                     # trained and validated without them
    assert tiny.opened_test_files == []


def test_the_audit_hook_does_see_a_test_file_being_opened(tmp_path):
    """The control: the hook is not blind.  A fresh copy of the test files (trainer.data caches what it has
    read by path) is read through trainer.data, and both opens are recorded.  (The training files are copied
    too: the test images are normalised by the statistics of the training images.)"""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (ROOT / "data" / "MNIST" / "raw").glob("*-ubyte.gz"):
        shutil.copy2(f, raw / f.name)
    with rh.watch_test_files() as opened:
        test = load_test(tmp_path)
    assert len(test) == 10000
    assert any("t10k-images" in p for p in opened) and any("t10k-labels" in p for p in opened)
