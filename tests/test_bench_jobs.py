"""bench/bench_jobs.py: N trainings at once on one device, their images/s summed, the best N named; a
process that cannot start ends the run with one line naming it instead of a wait at the barrier."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "bench_jobs.py"), "--device", "cpu", *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def _num(s):
    return float(s.replace(",", ""))


def test_sums_each_process_images_per_second_and_names_the_n_with_the_most():
    r = _run("--jobs", "1,2", "--epochs", "2", "--train-limit", "256")
    assert r.returncode == 0, r.stderr
    rows = re.findall(r"^N = (\d+): +([\d,]+) images/s summed +([\d.]+)x N=1  \(each: ([\d, ]+)\)$", r.stdout, re.M)
    assert [int(n) for n, *_ in rows] == [1, 2], r.stdout
    sums = {}
    for n, total, ratio, each in rows:
        rates = [_num(x) for x in each.split(", ")]
        assert len(rates) == int(n) and all(x > 0 for x in rates)
        assert abs(sum(rates) - _num(total)) <= len(rates)  # each is rounded to an image/s
        sums[int(n)] = _num(total)
        # the ratio is of the unrounded sums: each printed sum is off by up to half an image/s, which is a lot
        # of a ratio when a busy machine makes N = 1 slow
        ratio_of_printed = _num(total) / sums[1]
        assert abs(float(ratio) - ratio_of_printed) <= 0.005 + 0.5 * (1 + ratio_of_printed) / (sums[1] - 0.5) + 1e-9
    best = max(sums, key=lambda k: sums[k])
    assert f"most images/s summed: N = {best} ({sums[best]:,.0f} images/s)" in r.stdout


def test_a_process_that_cannot_start_is_one_line_and_no_wait(tmp_path):
    r = _run("--jobs", "2", "--epochs", "1", "--data-dir", tmp_path / "nothing")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: N = 2: process 0: DataError: "), r.stderr
    assert "process 1: " in lines[0]


def test_bad_arguments_are_one_error_line_and_exit_2():
    for args, says in ((("--jobs", "1,x"), "--jobs: expected numbers"), (("--jobs", "0"), "--jobs: expected numbers"),
                       (("--epochs", "0"), "--epochs: expected >= 1"), (("--spec", "nope.yaml"), "--spec: no such")):
        r = _run(*args)
        assert r.returncode == 2 and says in r.stderr.splitlines()[-1], (args, r.stderr)
