"""``python -m space.describe``: tables for good files, one error line and exit code 2 for a bad one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from space.analysis import count_params
from space.describe import main
from space.io import load

ROOT = Path(__file__).resolve().parents[1]
ZOO_FILES = sorted((ROOT / "space" / "zoo").glob("*.yaml"))


def test_describe_prints_params_line_per_zoo_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(p) for p in ZOO_FILES]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    params = [line for line in out.splitlines() if line.startswith("params: ")]
    assert params == [f"params: {count_params(load(p))}" for p in ZOO_FILES]
    assert [line for line in out.splitlines() if line.startswith("== ")] == [
        f"== {p} ({p.stem})" for p in ZOO_FILES]


def test_describe_table_lists_every_layer(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "space" / "zoo" / "seed003_14768.yaml"
    assert main([str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "params: 14768"
    assert out[-2] == "receptive field: 18 (then global); MACs: 4,508,240"
    kinds = [line.split()[1] for line in out[2:-2]]  # columns: place, kind, output, RF, jump, params, MACs
    assert len(kinds) == 27 + 2  # 27 top-level layers and the residual's 2 inner ones
    assert kinds.count("residual") == 1
    assert kinds[-3:] == ["gap", "dropout", "linear"]


BAD = {
    "malformed.yaml": "layers:\n- {kind: conv, out: 4\n",
    "unknown_kind.yaml": "layers:\n- {kind: nope}\n",
    "shape.yaml": "layers:\n- {kind: conv, out: 4}\n- {kind: linear, out: 10}\n",
    "unsafe.yaml": '!!python/object/apply:os.system ["echo hi"]\n',
    "not_utf8.yaml": b"name: \xff\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_describe_bad_file_exits_2_with_one_stderr_line(name: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    content = BAD[name]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main([str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err.startswith(f"error: {path}: ")
    assert "Traceback" not in err


def test_describe_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'absent.yaml'}: no such file\n"


def test_describe_stops_at_first_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: []\n")
    assert main([str(ZOO_FILES[0]), str(bad), str(ZOO_FILES[1])]) == 2
    out, err = capsys.readouterr()
    assert out.count("params: ") == 1
    assert err.count("\n") == 1


def test_describe_as_subprocess_exits_2_with_one_stderr_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n- {kind: conv, out: 0}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "space.describe", str(bad)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {bad}: layers[0]: out must be >= 1, got 0"]


def test_from_space_import_describe_gives_the_function_even_after_the_package_is_imported() -> None:
    import space
    import space.describe  # noqa: F401  (the package: space.describe must stay the function)
    from space import describe

    assert callable(describe) and describe is space.describe and "describe" in space.__all__
    assert describe is sys.modules["space.describe"].describe


def test_describe_gives_the_text_the_command_prints_for_one_spec(capsys: pytest.CaptureFixture[str]) -> None:
    from space import describe

    path = ZOO_FILES[0]
    assert main([str(path)]) == 0
    printed = capsys.readouterr().out
    assert describe(load(path), str(path)) + "\n" == printed
    assert describe(str(path)) + "\n" == printed  # a path is loaded, and heads the text
    assert describe(load(path)).splitlines()[0] == f"== {path.stem}"
    assert describe(load(path)).splitlines()[1:] == printed.splitlines()[1:]


def test_describe_command_prints_every_zoo_table_with_no_warning() -> None:
    from space import describe

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    files = [str(p.relative_to(ROOT)) for p in ZOO_FILES]
    proc = subprocess.run([sys.executable, "-W", "error", "-m", "space.describe", *files], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "\n\n".join(describe(f) for f in files) + "\n"
