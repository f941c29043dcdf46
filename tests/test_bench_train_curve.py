"""bench/train_curve.py reads a write-up's training-accuracy table and sets our runs' curves beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from train_curve import doc_curve  # noqa: E402

DOC000 = ROOT.parent / "shared" / "seeds" / "000_a3a04e655ccffd65.txt"

DOC = """# A write-up

| Epoch | Train Loss | Other |
|---|---|---|
| 1 | 0.5 | x |

Some text.

| Epoch | LR | Train Accuracy | Test Accuracy |
|-------|----|----|-------|
| 1 | 0.01 | 80.00% | 96.51% |
| 2 | 0.01 | **90.50%** | 98.29% |
| 3 | 0.001 | 95.00% | **99.42%** |

| Epoch | Train Accuracy |
|---|---|
| 9 | 1.00% |
"""


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "train_curve.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def _result(path: Path, *curves: list[float]) -> Path:
    runs = [{"seed": s, "status": "ok", "epochs": [{"epoch": e, "train_acc": a / 100} for e, a in enumerate(c, 1)]}
            for s, c in enumerate(curves)]
    runs.append({"seed": 9, "status": "diverged", "epochs": [{"epoch": 1, "train_acc": 0.0}]})
    path.write_text(json.dumps({"runs": runs}))
    return path


def test_the_first_table_with_both_columns_bold_and_percent_signs_stripped():
    assert doc_curve(DOC) == {1: 80.0, 2: 90.5, 3: 95.0}
    with pytest.raises(ValueError, match="Train Accuracy"):
        doc_curve("| Epoch | Test Accuracy |\n|---|---|\n| 1 | 99% |\n")


@pytest.mark.skipif(not DOC000.is_file(), reason=f"the write-up is not at {DOC000}")
def test_reads_the_seed000_write_up():
    curve = doc_curve(DOC000.read_text(encoding="utf-8"))
    assert sorted(curve) == list(range(1, 20))
    assert curve[1] == 77.69 and curve[11] == 98.64 and curve[19] == 98.82


def test_means_over_seeds_and_gaps_per_name(tmp_path):
    (tmp_path / "doc.md").write_text(DOC)
    a = _result(tmp_path / "a.json", [70.0, 90.0, 96.0], [72.0, 92.0, 96.0])
    b = _result(tmp_path / "b.json", [80.0, 90.0])  # two epochs only: the table keeps the shared ones
    r = _run("--doc", tmp_path / "doc.md", "--runs", f"a={a}", f"b={b}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["epoch", "write-up", "a", "b"]
    assert lines[1].split() == ["1", "80.00%", "71.00%", "80.00%"]
    assert lines[2].split() == ["2", "90.50%", "91.00%", "90.00%"]
    assert len(lines) == 5
    assert lines[3] == "a: 2 seeds, mean gap -4.25 points, largest -9.00 (epoch 1)"
    assert lines[4] == "b: 1 seeds, mean gap -0.25 points, largest -0.50 (epoch 2)"


def test_bad_arguments_are_one_line_and_status_2(tmp_path):
    (tmp_path / "doc.md").write_text(DOC)
    a = _result(tmp_path / "a.json", [70.0])
    for args in (("--doc", tmp_path / "none.md", "--runs", f"a={a}"),
                 ("--doc", tmp_path / "doc.md", "--runs", str(a)),
                 ("--doc", tmp_path / "doc.md", "--runs", f"a={tmp_path / 'none.json'}")):
        r = _run(*args)
        assert r.returncode == 2 and r.stdout == "", args
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.skipif(not DOC000.is_file(), reason=f"the write-up is not at {DOC000}")
def test_the_readme_shows_what_the_records_give():
    a, b = ROOT / "bench" / "records" / "seed000_actbn_19642", ROOT / "bench" / "records" / "seed000_19642"
    r = _run("--doc", DOC000, "--runs", f"act_bn={a / 'cpu-seeds0-4.result.json'}",
             f"act_bn={a / 'cpu-seeds5-9.result.json'}", f"bn_act={b / 'cpu-ours.result.json'}",
             f"bn_act={b / 'h200-ours-seeds0-9.result.json'}", f"bn_act={b / 'h200-ours-seeds10-19.result.json'}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 + 19 + 2
    # what the README says of them: act_bn within 0.15 points of the write-up from epoch 2 on,
    # bn_act 0.3 points or more under it at every epoch
    for line in lines[2:20]:
        _, doc, act_bn, _ = (float(c.rstrip("%")) for c in line.split())
        assert abs(act_bn - doc) <= 0.15, line
    for line in lines[1:20]:
        _, doc, _, bn_act = (float(c.rstrip("%")) for c in line.split())
        assert doc - bn_act >= 0.3, line
    readme = (ROOT / "bench" / "README.md").read_text()
    for line in lines:
        assert f"    {line}\n" in readme
