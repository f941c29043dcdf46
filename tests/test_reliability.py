"""Many workers on a real PostgreSQL, kills and Ctrl-C survived, failures recorded, nothing half-written."""

import errno
import os
import signal
import subprocess
import time
import uuid

import optuna
import pytest
from conftest import ROOT, TINY, search_cmd
from optuna.trial import TrialState

from search.storage import get_storage, mask_url
from search.study import counts as _counts

optuna.logging.set_verbosity(optuna.logging.WARNING)

ATTRS = ("params", "utilisation", "macs", "rf", "spec", "val_acc_curve", "epoch_seconds", "images_per_second",
         "device", "worker", "train_seconds")
# trials long enough to be caught running: a few seconds each on 2 cores
SLOW = ["--epochs", "2", "--train-limit", "3000", "--val", "200", "--pruner", "none", "--device", "cpu"]


def _counted_finished(study):
    return [t for t in study.get_trials() if t.state.is_finished() and _counts(t)]


def _wait_running(study, timeout=180):
    """The first trial that is training (its spec is recorded, so all its parameters are sampled)."""
    end = time.time() + timeout
    while time.time() < end:
        running = [t for t in study.get_trials() if t.state == TrialState.RUNNING and "spec" in t.user_attrs]
        if running:
            return running[0]
        time.sleep(0.3)
    raise AssertionError("no trial started running")


@pytest.mark.postgres
def test_three_workers_on_postgres_make_exactly_the_asked_trials(pg_url, tmp_path):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    procs = [subprocess.Popen(search_cmd("--budget", 5000, "--trials", 12, "--storage", pg_url, "--study-name", name,
                                         "--quiet", "--seed", i, "--out", tmp_path / f"b{i}.yaml",
                                         "--artifact-dir", tmp_path / "artifacts", *TINY),
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name=name, storage=get_storage(pg_url))
    trials = study.get_trials()
    assert len(trials) == 12 and len(_counted_finished(study)) == 12
    assert sorted(t.number for t in trials) == list(range(12))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.user_attrs["worker"] for t in trials}) >= 2
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert all(k in t.user_attrs for k in ATTRS), t.user_attrs.keys()


@pytest.mark.postgres
def test_a_killed_worker_on_postgres_has_its_trial_failed_and_retried(pg_url, tmp_path):
    name = f"kill-{uuid.uuid4().hex[:8]}"
    env = os.environ | {"CNNSEARCH_HEARTBEAT": "1,4"}
    cmd = lambda i: search_cmd("--budget", 5000, "--trials", 2, "--storage", pg_url, "--study-name", name,  # noqa: E731
                               "--quiet", "--seed", i, "--out", tmp_path / f"b{i}.yaml",
                               "--artifact-dir", tmp_path / "artifacts", *SLOW)
    victim = subprocess.Popen(cmd(0), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    study = optuna.load_study(study_name=name, storage=get_storage(pg_url)) if _wait_study(pg_url, name) else None
    running = _wait_running(study)
    assert running.user_attrs["worker"].endswith(f":{victim.pid}")
    survivor = subprocess.Popen(cmd(1), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err
    killed = study.get_trials()[running.number]
    assert killed.state == TrialState.FAIL
    retries = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == running.number]
    assert retries and retries[0].state == TrialState.COMPLETE and retries[0].params == killed.params
    assert len(_counted_finished(study)) == 2


def _wait_study(url, name, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        try:
            optuna.load_study(study_name=name, storage=get_storage(url))
            return True
        except KeyError:
            time.sleep(0.3)
    raise AssertionError(f"study {name} never appeared")


def test_a_killed_worker_on_the_journal_file_is_requeued_on_the_next_start(tmp_path):
    storage = tmp_path / "s.log"
    cmd = search_cmd("--budget", 5000, "--trials", 2, "--storage", storage, "--quiet", "--out", tmp_path / "b.yaml",
                     *SLOW)
    victim = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_study(str(storage), "budget-5000")
    study = optuna.load_study(study_name="budget-5000", storage=get_storage(str(storage)))
    running = _wait_running(study)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name="budget-5000", storage=get_storage(str(storage)))
    killed = study.get_trials()[running.number]
    assert killed.state == TrialState.FAIL and killed.user_attrs["fail_reason"].startswith("stale")
    retried = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == running.number]
    assert retried and retried[0].state == TrialState.COMPLETE and retried[0].params == killed.params
    assert len(_counted_finished(study)) == 2


def _sigint_as_at_a_terminal() -> None:
    """In the child: Ctrl-C's default action, which a shell's background job (CI under nohup) inherits as ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_marks_the_trial_prints_how_to_resume_and_exits_130(tmp_path):
    storage = tmp_path / "s.log"
    cmd = search_cmd("--budget", 5000, "--trials", 2, "--storage", storage, "--out", tmp_path / "b.yaml", *SLOW)
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_sigint_as_at_a_terminal)
    _wait_study(str(storage), "budget-5000")
    study = optuna.load_study(study_name="budget-5000", storage=get_storage(str(storage)))
    running = _wait_running(study)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert "resume with: python -m search.run" in err and "Traceback" not in err
    t = study.get_trials()[running.number]
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == "interrupted"
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert len(_counted_finished(study)) == 2
    assert any(t.user_attrs.get("retry_of") == running.number and t.state == TrialState.COMPLETE
               for t in study.get_trials())


def _search_with_loss(loss, tmp_path, monkeypatch):
    """A 2-trial search whose training loss is ``loss(real_cross_entropy, *args)``; its failed trials."""
    import trainer.loop
    from search.run import main

    real = trainer.loop.F.cross_entropy
    monkeypatch.setattr(trainer.loop.F, "cross_entropy", lambda *a, **k: loss(real, *a, **k))
    rc = main(["--budget", "5000", "--trials", "2", "--storage", str(tmp_path / "s.log"),
               "--out", str(tmp_path / "b.yaml"), *TINY])
    monkeypatch.setattr(trainer.loop.F, "cross_entropy", real)
    assert rc == 0
    study = optuna.load_study(study_name="budget-5000", storage=get_storage(str(tmp_path / "s.log")))
    return study.get_trials(states=(TrialState.FAIL,))


def test_a_nan_trial_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    failed = _search_with_loss(lambda real, *a, **k: real(*a, **k) * float("nan"), tmp_path, monkeypatch)
    assert len(failed) == 2 and all(t.user_attrs["fail_reason"].startswith("nan") for t in failed)
    assert not (tmp_path / "b.yaml").exists()


def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys):
    from search.run import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["--budget", "5000", "--trials", "1", "--storage", str(tmp_path / "s.log"),
               "--out", str(blocker / "best.yaml"), *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "best.yaml" in err
    assert not (tmp_path / "s.log").exists() or "budget-5000" not in (tmp_path / "s.log").read_text()


def test_a_full_disk_leaves_no_half_written_file(tmp_path, monkeypatch):
    from space.io import write_atomic

    target = tmp_path / "best.yaml"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        write_atomic(target, "name: x\n" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_at_export_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from search import run

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("search.export.write_atomic", full)
    rc = run.main(["--budget", "5000", "--trials", "1", "--storage", str(tmp_path / "s.log"),
                   "--out", str(tmp_path / "best.yaml"), *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and err.count("\n") == 1
    assert not (tmp_path / "best.yaml").exists()


def test_passwords_are_masked():
    assert mask_url("postgresql://bob:hunter2@db.example/x") == "postgresql://bob:***@db.example/x"
    assert mask_url("postgresql://bob@db/x") == "postgresql://bob@db/x"


def test_out_of_memory_ends_the_trial_with_its_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    import torch

    def oom(real, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    failed = _search_with_loss(oom, tmp_path, monkeypatch)
    assert len(failed) == 2
    assert all(t.user_attrs["fail_reason"].startswith("oom: out of device memory") for t in failed)
