"""Shared fixtures: the project root, a tiny-search command line, and the PostgreSQL URL."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# a search small enough for a test: 1 epoch on a few hundred images
TINY = ["--epochs", "1", "--train-limit", "300", "--val", "200", "--pruner", "none", "--device", "cpu"]


@pytest.fixture
def tiny_search_args():
    return list(TINY)


@pytest.fixture
def pg_url():
    """A real PostgreSQL server (scripts/test starts one); skipped only outside CI when there is none."""
    url = os.environ.get("CNNSEARCH_PG_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CNNSEARCH_PG_URL is not set: scripts/test must start PostgreSQL in CI")
        pytest.skip("no PostgreSQL server (run the tests through scripts/test)")
    return url


def search_cmd(*args):
    return [sys.executable, "-m", "search.run", *map(str, args)]


_SCRATCH = {".venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache"}


def _checkout_files():
    out = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in _SCRATCH and not d.endswith(".egg-info")]
        out.update(os.path.join(dirpath, f) for f in filenames)
    return out


@pytest.fixture(scope="session", autouse=True)
def tests_write_only_under_their_tmp_dirs():
    """The checkout after the tests holds the files it held before them: runs, artifacts and screenshots go to
    each test's tmp dir.  (A search of one's own running in the checkout meanwhile would show up here too.)"""
    before = _checkout_files()
    yield
    new = sorted(_checkout_files() - before)
    assert not new, f"tests wrote into the checkout: {new[:10]}"
