"""Shared by tests/test_results_*.py: one real tiny search, made once per session, and a live optuna-dashboard.

The search runs with a data folder that holds only MNIST's training files, and with an audit hook that
records every attempt to open a test-set (``t10k``) file, so the same run proves the search path never
touches the test set.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import ROOT

BUDGET = 5000
STUDY = f"budget-{BUDGET}"
# three trials, one epoch on 300 images, 200 validation images, no pruning, CPU: a few seconds
SEARCH = ["--budget", str(BUDGET), "--trials", "3", "--epochs", "1", "--train-limit", "300", "--val", "200",
          "--pruner", "none", "--device", "cpu", "--quiet"]

# ---------------------------------------------------------------- who opens the test files

_watch = {"on": False, "opened": []}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watch["on"] and event == "open" and args and "t10k" in str(args[0]):
        _watch["opened"].append(str(args[0]))


_hooked = False


@contextlib.contextmanager
def watch_test_files() -> Iterator[list[str]]:
    """Record, in this process, every open() of a path containing ``t10k`` while the block runs.

    The trainer's in-process cache of decoded files is emptied first: a test set that an earlier
    test already read would otherwise be served without an open().
    """
    global _hooked
    import trainer.data

    trainer.data.clear_cache()
    if not _hooked:  # audit hooks cannot be removed: install one, switched on and off
        sys.addaudithook(_audit)
        _hooked = True
    opened: list[str] = []
    _watch["opened"] = opened
    _watch["on"] = True
    try:
        yield opened
    finally:
        _watch["on"] = False


def train_only_data_dir(root: Path) -> Path:
    """A copy of the project's data folder with the training files only (no t10k-*)."""
    src = ROOT / "data" / "MNIST" / "raw"
    dst = root / "train-only" / "MNIST" / "raw"
    dst.mkdir(parents=True)
    for f in src.glob("train-*"):
        shutil.copy2(f, dst / f.name)
    return root / "train-only"


# ---------------------------------------------------------------- the tiny search


@dataclass
class TinyStudy:
    root: Path
    storage: Path
    artifacts: Path
    study_name: str
    data_dir: Path
    stdout: str
    opened_test_files: list[str] = field(default_factory=list)

    def load(self) -> Any:
        import optuna

        from search.storage import get_storage

        return optuna.load_study(study_name=self.study_name, storage=get_storage(str(self.storage)))


_cache: dict[str, TinyStudy] = {}


def tiny_study(tmp_path_factory: Any) -> TinyStudy:
    """The session's tiny search (run on first use): 3 real trials of a 5,000-parameter budget."""
    if "study" in _cache:
        return _cache["study"]
    import io
    from contextlib import redirect_stdout

    import optuna

    from search.run import main

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = tmp_path_factory.mktemp("tiny-search")
    data = train_only_data_dir(root)
    storage, artifacts = root / "s.log", root / "artifacts"
    buf = io.StringIO()
    with watch_test_files() as opened, redirect_stdout(buf):
        rc = main([*SEARCH, "--storage", str(storage), "--out", str(root / "search-best.yaml"),
                   "--data-dir", str(data), *(_artifact_args(artifacts))])
    assert rc == 0, buf.getvalue()
    ts = TinyStudy(root, storage, artifacts, STUDY, data, buf.getvalue(), list(opened))
    _annotate_if_needed(ts)
    _cache["study"] = ts
    return ts


def _artifact_args(artifacts: Path) -> list[str]:
    """``--artifact-dir`` when search.run has it (it annotates the dashboard at the end of a search)."""
    from search.run import build_parser

    opts = {o for a in build_parser()._actions for o in a.option_strings}
    return ["--artifact-dir", str(artifacts)] if "--artifact-dir" in opts else []


def _annotate_if_needed(ts: TinyStudy) -> None:
    """Until search.run annotates the study itself, do what it will do: note + spec + weights."""
    import optuna
    import torch

    from results.dashboard import annotate
    from search.study import best as _best
    from space.build import build
    from space.io import loads

    study = ts.load()
    metas = optuna.artifacts.get_all_artifact_meta(study)
    if any(m.filename.endswith(".pt") for m in metas):
        return
    best = _best(study.get_trials())
    torch.manual_seed(0)
    model = build(loads(best.user_attrs["spec"]))
    res = annotate(study, str(ts.storage), ts.artifacts, weights=model)
    assert res.ok, res.errors


# ---------------------------------------------------------------- a live dashboard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Dashboard:
    url: str
    proc: subprocess.Popen

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return r.read()

    def json(self, path: str) -> Any:
        import json

        return json.loads(self.get(path))


@contextlib.contextmanager
def dashboard(storage: Path, artifacts: Path, log: Path) -> Iterator[Dashboard]:
    """``optuna-dashboard STORAGE --artifact-dir DIR`` on a free loopback port, up until the block ends."""
    exe = Path(sys.executable).with_name("optuna-dashboard")
    for _ in range(3):  # a port taken between free_port() and the bind: try another
        port = free_port()
        out = open(log, "ab")
        proc = subprocess.Popen([str(exe), str(storage), "--artifact-dir", str(artifacts), "--port", str(port),
                                 "--host", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        d = Dashboard(f"http://127.0.0.1:{port}", proc)
        deadline = time.monotonic() + 30
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                d.get("/api/meta", timeout=2)
                up = True
                break
            except OSError:
                time.sleep(0.2)
        if up:
            try:
                yield d
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                out.close()
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        out.close()
    raise RuntimeError(f"optuna-dashboard did not come up; see {log}:\n{log.read_text(errors='replace')[-2000:]}")
