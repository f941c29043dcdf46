"""search.run refuses bad input with one line and exit 2, before any work."""

import subprocess
import sys
from pathlib import Path

import pytest

from search.run import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv, needle", [
    (["--budget", "abc"], "--budget"),
    (["--budget", "0"], "--budget"),
    (["--budget", "-5"], "--budget"),
    ([], "--budget"),
    (["--budget", "20000", "--pruner", "magic"], "--pruner"),
    (["--budget", "20000", "--trials", "x"], "--trials"),
    (["--budget", "100"], "too small"),
    (["--budget", "20000", "--space", "/nonexistent/space.yaml"], "no such file"),
    (["--budget", "20000", "--storage", "foo://bar/baz"], "unsupported storage URL"),
    (["--budget", "20000", "--storage", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:"), err
    assert needle in err
    assert "secret" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_budget_as_a_process_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "search.run", "--budget", "twenty"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
