"""optuna-dashboard on a real study: its HTTP API serves the trials, user attributes, note and artifacts
that the search and results.dashboard.annotate recorded, and headless Chromium renders the trials."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
import results_helpers as rh
import torch
import yaml
from conftest import ROOT

from results.dashboard import annotate, load_weights, study_note
from search.study import best as _best
from search.study import pareto_front
from space.build import build
from space.io import loads


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return rh.tiny_study(tmp_path_factory)


@pytest.fixture(scope="module")
def live(tiny):
    with rh.dashboard(tiny.storage, tiny.artifacts, tiny.root / "dashboard.log") as d:
        yield d


def _study_id(live):
    studies = live.json("/api/studies")["study_summaries"]
    match = [s for s in studies if s["study_name"] == rh.STUDY]
    assert len(match) == 1, studies
    return match[0]["study_id"]


def test_dashboard_api_serves_the_study_trials_and_user_attributes(tiny, live):
    sid = _study_id(live)
    summary = [s for s in live.json("/api/studies")["study_summaries"] if s["study_id"] == sid][0]
    assert {a["key"]: a["value"] for a in summary["user_attrs"]}["budget"] == str(rh.BUDGET)
    detail = live.json(f"/api/studies/{sid}")
    study = tiny.load()
    assert len(detail["trials"]) == len(study.get_trials())
    best = _best(study.get_trials())
    assert [t["number"] for t in detail["best_trials"]] == [best.number]
    for t in detail["trials"]:
        if t["state"] != "Complete":
            continue
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        for key in ("params", "utilisation", "macs", "rf", "spec", "val_acc_curve", "train_seconds", "device"):
            assert key in attrs, (t["number"], key)
        assert int(attrs["params"]) <= rh.BUDGET
        spec = loads(attrs["spec"])                     # the trial's spec, straight from the dashboard
        assert sum(p.numel() for p in build(spec).parameters()) == int(attrs["params"])
        assert t["params"]                              # the sampled choices
        assert t["intermediate_values"]                 # the per-epoch validation accuracy


def test_dashboard_api_serves_the_note_and_the_best_trials_files(tiny, live):
    sid = _study_id(live)
    detail = live.json(f"/api/studies/{sid}")
    study = tiny.load()
    best = _best(study.get_trials())
    note = detail["note"]["body"]
    assert f"budget **{rh.BUDGET:,}**" in note and f"Trial **{best.number}**" in note
    assert "layers[0]" in note and "params:" in note            # the per-layer table
    assert "Pareto front" in note
    for t in pareto_front(study.get_trials()):
        assert f"| {t.number} | {t.user_attrs['params']:,} |" in note
    files = {a["filename"]: a for a in detail["artifacts"]}
    assert {f"best-t{best.number}.yaml", f"best-t{best.number}.pt"} <= set(files)
    spec_text = live.get(f"/artifacts/{sid}/{files[f'best-t{best.number}.yaml']['artifact_id']}").decode()
    spec = loads(spec_text)
    assert spec == loads(best.user_attrs["spec"]) and spec.info["provenance"]["trial"] == best.number
    weights = live.get(f"/artifacts/{sid}/{files[f'best-t{best.number}.pt']['artifact_id']}")
    pt = tiny.root / "downloaded.pt"
    pt.write_bytes(weights)
    sd = load_weights(pt)                                         # weights_only=True
    model = build(spec)
    model.load_state_dict(sd)                                     # the keys and shapes fit the spec
    assert sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k) \
        == best.user_attrs["params"]


def test_annotate_is_idempotent_and_never_raises(tiny, tmp_path):
    study = tiny.load()
    before = {m.filename for m in optuna.artifacts.get_all_artifact_meta(study)}
    res = annotate(study, str(tiny.storage), tiny.artifacts)          # again: nothing new uploaded
    assert res.ok and res.note and res.artifacts == {}
    assert {m.filename for m in optuna.artifacts.get_all_artifact_meta(study)} == before
    from optuna_dashboard import get_note

    assert all(f"`{name}`" in get_note(study) for name in before)     # the note still lists every file
    blocker = tmp_path / "f"
    blocker.write_text("")
    bad = annotate(study, str(tiny.storage), blocker / "artifacts")  # a file where the folder should go
    assert not bad.ok and "artifacts" in bad.errors[0] and bad.note   # reported, not raised; the note is written


def test_annotate_refuses_weights_of_another_network_but_uploads_the_spec(tiny, tmp_path):
    from search.storage import get_storage

    url = str(tmp_path / "copy.log")
    optuna.copy_study(from_study_name=rh.STUDY, from_storage=get_storage(str(tiny.storage)),
                      to_storage=get_storage(url))
    study = optuna.load_study(study_name=rh.STUDY, storage=get_storage(url))
    other = build(loads("layers: [{kind: conv, out: 3, k: 3}, {kind: gap}, {kind: linear, out: 10}]"))
    res = annotate(study, url, tmp_path / "a", weights=other)
    best = _best(study.get_trials())
    assert not res.ok and "weights of trial" in res.errors[0]
    assert list(res.artifacts) == [f"best-t{best.number}.yaml"] and res.note
    ok = annotate(study, url, tmp_path / "a", weights=_saved(best, tmp_path))
    assert ok.ok and list(ok.artifacts) == [f"best-t{best.number}.pt"]   # a state_dict file is fine


def _saved(best, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build(loads(best.user_attrs["spec"])).state_dict(), path)
    return path


def test_study_note_without_completed_trials(tmp_path):
    study = optuna.create_study()
    study.set_user_attr("budget", 20000)
    assert "No trial has completed yet" in study_note(study)
    res = annotate(study, None, tmp_path / "a")
    assert res.ok and res.note and not res.artifacts and res.skipped


def _chromium():
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/setup installs it); CI must run the browser test")
        pytest.skip("chromium is not installed (scripts/setup installs it as root)")
    return exe


def _browse(exe, url, tmp, *extra, budget_ms=8000):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp}", "--window-size=1400,1000",
             f"--virtual-time-budget={budget_ms}"]
    return subprocess.run([exe, *flags, *extra, url], capture_output=True, text=True, timeout=90)


@pytest.mark.browser
def test_chromium_renders_the_trials_of_the_study(tiny, live, tmp_path):
    exe = _chromium()
    sid = _study_id(live)
    n = len(tiny.load().get_trials())
    url = f"{live.url}/dashboard/studies/{sid}/trials"
    shot = tmp_path / "dashboard-trials.png"   # look at it with: pytest --basetemp DIR, then DIR/.../
    r = _browse(exe, url, tmp_path / "profile", "--dump-dom", f"--screenshot={shot}")
    assert r.returncode == 0, r.stderr[-2000:]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", r.stdout, flags=re.S)))
    assert f"{n} Trials" in text, text[:2000]
    for number in range(n):
        assert f"Trial {number}" in text
    assert rh.STUDY in text and "Complete" in text
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000


def test_dashboard_command_in_readme_is_one_command_on_loopback():
    readme = (ROOT / "README.md").read_text()
    assert "optuna-dashboard runs/cnnsearch.log --artifact-dir runs/artifacts" in readme
    from optuna_dashboard._config import DashboardConfig

    assert DashboardConfig().host == "127.0.0.1"                      # loopback unless --host says otherwise


def test_weights_round_trip_through_torch_save(tmp_path):
    spec = loads(yaml.safe_dump({"layers": [{"kind": "conv", "out": 4, "k": 3}, {"kind": "gap"},
                                            {"kind": "linear", "out": 10}]}))
    model = build(spec)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    sd = load_weights(tmp_path / "w.pt")
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
