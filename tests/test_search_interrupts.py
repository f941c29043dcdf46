"""Ctrl-C at any moment of a search, a killed worker and a killed coordinator: real processes, waiting on
what they print and store, never on sleeps tuned to a quiet machine."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from conftest import ROOT, search_cmd
from optuna.trial import TrialState

from search.run import main
from search.storage import get_storage
from search.study import counted_finished

optuna.logging.set_verbosity(optuna.logging.WARNING)

PLAN = [{"trials": 3, "images": 200, "epochs": 2}, {"trials": 1, "images": 200, "epochs": 2}]

# (name, the first stdout line at which Ctrl-C is sent)
MOMENTS = [
    ("while the data loads", lambda s: s.startswith("study 'budget-5000'")),
    ("before the first trial", lambda s: s.startswith("plan:")),
    ("mid-epoch", lambda s: s.startswith("  trial   0  rung 0  epoch 1/2")),
    ("while a trial is told", lambda s: s.startswith("  trial   0  rung 0  epoch 2/2")),
    ("between trials", lambda s: s.startswith("[") and " trial   0 " in s),
    ("in a promoted trial", lambda s: s.startswith("  trial   3  rung 1  epoch 1/2")),
    ("at the summary", lambda s: s.startswith("study 'budget-5000': ")),
    ("before the export", lambda s: s.startswith("best: ")),
    ("after the export", lambda s: s.startswith("exported: ")),
    ("while the note is written", lambda s: s.startswith("dashboard study note")),
    ("at the very end", lambda s: s.startswith("review: ")),
]


def _default_sigint():
    """In the child: Ctrl-C's default action, which a shell's background job (CI under nohup) inherits as ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _args(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    return ["--budget", "5000", "--plan", str(plan), "--val", "100", "--device", "cpu", "--pruner", "none",
            "--storage", str(tmp_path / "s.log"), "--out", str(tmp_path / "best.yaml")]


@pytest.mark.slow
@pytest.mark.parametrize("moment", [m[0] for m in MOMENTS])
def test_ctrl_c_at_any_moment_exits_130_leaves_nothing_running_and_the_study_resumes(tmp_path, moment):
    when = dict(MOMENTS)[moment]
    args = _args(tmp_path)
    env = dict(os.environ, CNNSEARCH_THREADS="1")
    p = subprocess.Popen(search_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint, env=env)
    seen = []
    for line in p.stdout:
        seen.append(line)
        if when(line):
            p.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail(f"the search ended without printing the line for {moment!r}: {''.join(seen)}")
    out, err = p.communicate(timeout=600)
    assert p.returncode in (130, 0), (p.returncode, err)
    assert "Traceback" not in err, err
    if p.returncode == 130:
        assert "resume with: python -m search.run" in err
    study = optuna.load_study(study_name="budget-5000", storage=get_storage(str(tmp_path / "s.log")))
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert main(args) == 0                                       # the same command finishes the study
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(counted_finished(trials)) == 4
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert (tmp_path / "best.yaml").is_file()


CTRL_C_IN_EXEC = 'exec("import signal; signal.raise_signal(signal.SIGINT)")'  # as while a dataclass is defined
PROBES = {  # (a module run with python -m, what it prints on Ctrl-C)
    "search.run": (f"""
import signal, sys
import search.run

def body(args, argv):
    {CTRL_C_IN_EXEC}
    return 0

search.run._main = body
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as search.run's __main__ does
sys.exit(search.run.main(["--budget", "5000"]))
""", "resume with: python -m search.run --budget 5000"),
    "the other commands (space.cli.run_main)": (f"""
import sys
from space.cli import run_main

def body(argv):
    {CTRL_C_IN_EXEC}
    return 0

sys.exit(run_main(body, []))
""", "interrupted"),
}


@pytest.mark.parametrize("command", list(PROBES))
def test_ctrl_c_that_lands_in_exec_of_a_string_still_exits_130(tmp_path, command):
    """CPython marks a KeyboardInterrupt that leaves exec() of a string as unhandled, and ``python -m`` then
    dies of SIGINT (-2) whatever main returned: Ctrl-C must be raised as a subclass, which it does not mark."""
    probe, says = PROBES[command]
    (tmp_path / "ctrl_c_probe.py").write_text(probe)
    r = subprocess.run([sys.executable, "-m", "ctrl_c_probe"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, preexec_fn=_default_sigint)
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert says in r.stderr and "Traceback" not in r.stderr

def _wait(pred, what, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _running(study, n=1):
    run = [t for t in study.get_trials() if t.state == TrialState.RUNNING and "spec" in t.user_attrs]
    return run if len(run) >= n else None


def _pid(t):
    return int(t.user_attrs["worker"].rsplit(":", 1)[1])


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


SLOW_PLAN = [{"trials": 4, "images": 3000, "epochs": 2}]


def _jobs_cmd(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(SLOW_PLAN))
    return ["--budget", "5000", "--plan", str(plan), "--val", "100", "--device", "cpu", "--pruner", "none",
            "--jobs", "2", "--storage", str(tmp_path / "s.log"), "--out", str(tmp_path / "best.yaml")]


@pytest.mark.slow
def test_a_killed_worker_costs_its_trial_only_and_the_study_still_exports(tmp_path):
    args = _jobs_cmd(tmp_path)
    p = subprocess.Popen(search_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage = get_storage(str(tmp_path / "s.log"))
    _wait(lambda: "budget-5000" in optuna.get_all_study_names(storage), "the study")
    study = optuna.load_study(study_name="budget-5000", storage=storage)
    victim = _wait(lambda: _running(study), "a running trial")[0]
    os.kill(_pid(victim), signal.SIGKILL)
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    assert f"(pid {_pid(victim)}) died (killed by SIGKILL); its trial is redone" in err
    trials = study.get_trials()
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL and killed.user_attrs["fail_reason"].startswith("stale")
    assert any(t.user_attrs.get("retry_of") == victim.number and t.state == TrialState.COMPLETE for t in trials)
    assert len(counted_finished(trials)) == 4 and (tmp_path / "best.yaml").is_file()
    assert "exported: " in out


@pytest.mark.slow
def test_workers_stop_when_their_coordinator_is_killed_and_the_command_finishes_the_study(tmp_path):
    args = _jobs_cmd(tmp_path)
    p = subprocess.Popen(search_cmd(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = get_storage(str(tmp_path / "s.log"))
    _wait(lambda: "budget-5000" in optuna.get_all_study_names(storage), "the study")
    study = optuna.load_study(study_name="budget-5000", storage=storage)
    running = _wait(lambda: _running(study, 2), "two running trials")
    p.kill()
    p.wait()
    for t in running:  # they notice within seconds; the generous bound is for a busy machine
        _wait(lambda t=t: _gone(_pid(t)), f"worker {_pid(t)} to stop", timeout=120)
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(trials[t.number].user_attrs.get("fail_reason") == "interrupted" for t in running)
    assert main([a for a in args if a not in ("--jobs", "2")]) == 0
    trials = study.get_trials()
    assert len(counted_finished(trials)) == 4 and (tmp_path / "best.yaml").is_file()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
