"""bench/gpu_checks.sh, the GPU checks for a lent machine, run small on this CPU: each step's output under
$OUT, a wrong step refused before anything is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path, *args):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DEVICE": "cpu", "SMALL": "1", "PY": sys.executable}
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_checks.sh"), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)


def test_a_wrong_step_is_one_error_line_exit_2_and_nothing_written(tmp_path):
    for args in ((), ("gpu",)):
        r = _run(tmp_path, *args)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: step: expected jobs or search, got "), r.stderr
        assert not (tmp_path / "out").exists()


def test_the_jobs_step_runs_the_cuda_tests_then_the_throughput_of_n_trainings_into_out(tmp_path):
    r = _run(tmp_path, "jobs")
    assert r.returncode == 0, r.stdout + r.stderr
    out = (tmp_path / "out" / "jobs.out").read_text()
    assert out.splitlines()[0].startswith("torch ") and out.splitlines()[0].endswith(" on no GPU")
    assert re.search(r"^\d+ skipped", out, re.M), out            # tests/test_trainer_cuda.py, without a GPU
    assert [int(n) for n in re.findall(r"^N = (\d+): ", out, re.M)] == [1, 2], out
    assert "most images/s summed: N = " in out
    assert out == r.stdout                                      # what it printed is what it kept


@pytest.mark.slow
def test_the_search_step_times_the_bare_command_and_keeps_its_output_export_and_journal(tmp_path):
    import gzip

    import optuna

    from space.analysis import count_params
    from space.io import load

    r = _run(tmp_path, "search")
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["best.yaml", "cnnsearch.log.gz", "search.out"]
    text = (out / "search.out").read_text()
    assert "study 'budget-20000'" in text and text.rstrip().endswith("exit 0")
    assert float(re.search(r"^real (\d+\.\d+)$", text, re.M).group(1)) > 0
    spec = load(out / "best.yaml")
    assert count_params(spec) <= 20000 and spec.info["provenance"]["study"] == "budget-20000"
    journal = tmp_path / "cnnsearch.log"                        # the whole journal: every trial the output counts
    journal.write_bytes(gzip.decompress((out / "cnnsearch.log.gz").read_bytes()))
    study = optuna.load_study(study_name="budget-20000",
                              storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
                                  str(journal))))
    assert f"study 'budget-20000': {len(study.trials)} trials (" in text
