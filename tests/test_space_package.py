"""The package's face: ``from space import build, load, ...`` gives functions and classes, without torch up front,
and no file of ``space/`` imports another in a circle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import space

ROOT = Path(__file__).resolve().parents[1]
ZOO = sorted((ROOT / "space" / "zoo").glob("*.yaml"))


@pytest.mark.parametrize("name", space.__all__)
def test_public_name_is_a_function_class_or_value_not_a_submodule(name: str) -> None:
    assert not isinstance(getattr(space, name), types.ModuleType)


def test_from_space_import_gives_the_functions() -> None:
    from space import analyze, build, count_params, dumps, load, loads

    spec = load(ZOO[0])
    assert sum(p.numel() for p in build(spec).parameters()) == count_params(spec) == analyze(spec).params
    assert loads(dumps(spec)) == spec


def test_public_names_are_the_ones_of_the_modules_they_come_from() -> None:
    import space.analysis
    import space.build
    import space.io
    import space.spec

    assert space.build is sys.modules["space.build"].build
    assert space.load is space.io.load and space.analyze is space.analysis.analyze
    assert space.Conv is space.spec.Conv and space.SpecError is space.spec.SpecError


def test_a_fresh_import_binds_build_to_the_function_and_does_not_import_torch() -> None:
    code = ("import sys\n"
            "from space.build import build as f\n"
            "from space import build, load\n"
            "assert build is f and callable(build), build\n"
            "assert 'torch' not in sys.modules\n"
            "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def _imports(path: Path) -> set[str]:
    """The ``space.*`` modules a file imports, anywhere in it (inside functions and ``TYPE_CHECKING`` too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_no_file_of_space_imports_another_in_a_circle() -> None:
    files = {f"space.{p.stem}": p for p in (ROOT / "space").glob("*.py") if p.stem != "__init__"}
    edges = {m: {t for t in _imports(p) if t in files and t != m} for m, p in files.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(t == goal or (t not in seen and reaches(t, goal, seen | {t})) for t in edges[start])

    assert [m for m in files if reaches(m, m, set())] == []
    assert "space.analysis" not in edges["space.spec"]
