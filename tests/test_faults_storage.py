"""Faults of the database: a PostgreSQL server restarted mid-study, and the retries that ride it out."""

import os
import re
import shlex
import subprocess
import time
import uuid

import optuna
import pytest
import sqlalchemy.exc
from conftest import ROOT, TINY, search_cmd
from optuna.trial import TrialState

from search import storage as st
from search.storage import StorageUnavailable, get_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

# fail reasons of trials that do not count towards --trials (a worker's crash, a kill, a surplus start)
UNCOUNTED = ("surplus", "stale", "interrupted")


def _lost(message="server closed the connection unexpectedly"):
    """The error SQLAlchemy raises when the server went away, wrapped as Optuna's RDB storage wraps it."""
    cause = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(message), connection_invalidated=True)
    try:
        raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from cause
    except optuna.exceptions.StorageInternalError as e:
        return e


def test_every_call_optunas_cache_makes_on_the_database_is_retried():
    import inspect

    from optuna.storages import _cached_storage

    called = set(re.findall(r"self\._backend\.(\w+)\(", inspect.getsource(_cached_storage)))
    settings = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}  # attributes: no database call
    assert len(called) > 20 and called - settings <= set(st._RETRIED), called - settings - set(st._RETRIED)


def test_only_lost_connections_count_as_lost():
    assert st._connection_lost(_lost())
    assert not st._connection_lost(optuna.exceptions.StorageInternalError("value too long"))
    assert not st._connection_lost(ValueError("x"))
    integrity = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert not st._connection_lost(integrity)


class Flaky:
    """A retrying RDB storage (on SQLite) whose ``get_all_studies`` loses its connection the first ``n`` times."""

    def __init__(self, path, monkeypatch, n):
        self.storage, self.calls, self.n = st._RetryingRDBStorage(f"sqlite:///{path}"), [], n
        real = optuna.storages.RDBStorage.get_all_studies

        def get_all_studies(storage):
            self.calls.append(time.monotonic())
            if len(self.calls) <= self.n:
                raise _lost()
            return real(storage)

        monkeypatch.setattr(st._RetryingRDBStorage, "get_all_studies", st._with_retry(get_all_studies))


def test_a_call_that_lost_its_connection_is_retried_with_one_warning_line(tmp_path, monkeypatch, capsys):
    flaky = Flaky(tmp_path / "db.sqlite", monkeypatch, n=3)
    assert flaky.storage.get_all_studies() == []
    assert len(flaky.calls) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "get_all_studies lost its connection ((builtins.Exception) server closed the connection" in err
    assert "retrying for up to 30 s" in err


def test_a_database_gone_for_longer_than_the_retry_window_is_one_line(tmp_path, monkeypatch):
    flaky = Flaky(tmp_path / "db.sqlite", monkeypatch, n=10**6)
    monkeypatch.setattr(flaky.storage, "retry_s", 0.5)
    with pytest.raises(StorageUnavailable) as e:
        flaky.storage.get_all_studies()
    message = str(e.value)
    assert message.count("\n") == 0
    assert message.startswith("--storage: lost the connection to sqlite:///") and "for over 0.5 s: " in message
    assert "server closed the connection unexpectedly" in message
    assert len(flaky.calls) >= 3  # backed off: 0.1 + 0.2 + ... within the half second


def test_a_state_committed_just_before_the_connection_went_is_not_an_error(tmp_path, monkeypatch):
    """The retry of a commit whose reply was lost finds the trial already finished: that is our own write."""
    storage = st._RetryingRDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    real = optuna.storages.RDBStorage.set_trial_state_values
    lost_once = []

    def set_trial_state_values(self, trial_id, state, values=None):  # commits, then loses the reply
        out = real(self, trial_id, state, values)
        if not lost_once:
            lost_once.append(1)
            raise _lost()
        return out

    monkeypatch.setattr(st._RetryingRDBStorage, "set_trial_state_values", st._with_retry(set_trial_state_values))
    study.tell(trial, 0.5)
    t = study.get_trials()[0]
    assert t.state == TrialState.COMPLETE and t.value == 0.5


# ---------------------------------------------------------------- a real restart


def _counts(t) -> bool:
    if t.state != TrialState.FAIL:
        return True
    reason = str(t.user_attrs.get("fail_reason", ""))
    return bool(reason) and not reason.startswith(UNCOUNTED)


def _wait(what, predicate, proc, timeout=600):
    """Poll ``predicate()`` until it is true; fail early if ``proc`` ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the search ended (exit {proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _study_or_none(url, name):
    try:
        return optuna.load_study(study_name=name, storage=get_storage(url))
    except KeyError:
        return None


@pytest.mark.postgres
@pytest.mark.slow
def test_a_postgres_restart_mid_study_is_ridden_out_by_three_workers(pg_url, tmp_path):
    ctl = os.environ.get("CNNSEARCH_PG_CTL")
    if not ctl:
        pytest.skip("CNNSEARCH_PG_CTL is not set: scripts/test exports it for the server it starts")
    name = f"restart-{uuid.uuid4().hex[:8]}"
    n = 9
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(search_cmd("--budget", 5000, "--trials", n, "--jobs", 3, "--storage", pg_url,
                                           "--study-name", name, "--quiet", "--out", tmp_path / "best.yaml",
                                           "--artifact-dir", tmp_path / "artifacts", *TINY),
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        study = _wait("the study was created", lambda: _study_or_none(pg_url, name), proc)

        def mid_trial():  # a trial finished and another one training: the restart lands mid-study
            trials = study.get_trials()
            return (any(t.state == TrialState.COMPLETE for t in trials)
                    and any(t.state == TrialState.RUNNING and "spec" in t.user_attrs for t in trials))

        _wait("a finished trial and a running one", mid_trial, proc)
        restart = subprocess.run([*shlex.split(ctl), "restart", "-m", "fast", "-w", "-t", "120"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
        assert restart.returncode == 0, restart.stderr
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = log.read_text()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr

    study = optuna.load_study(study_name=name, storage=get_storage(pg_url))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(1 for t in trials if t.state.is_finished() and _counts(t)) == n
    errors = {t.number: t.user_attrs.get("fail_reason") for t in trials
              if t.state == TrialState.FAIL and str(t.user_attrs.get("fail_reason", "")).startswith("error")}
    assert not errors, errors
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete
    for t in complete:
        assert all(k in t.user_attrs for k in ("params", "spec", "val_acc_curve")), (t.number, t.user_attrs.keys())
        assert len(t.user_attrs["val_acc_curve"]) == 1  # TINY trains 1 epoch
