"""Safe loading only; no credentials in logs, exports or notes."""

import os
import pickle

import pytest
import torch
from conftest import TINY

from search.run import main as search_main


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cnnsearch-pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    from conftest import ROOT

    from space.build import build
    from space.io import load
    from trainer.data import load_splits
    from trainer.loop import fit

    evil = tmp_path / "ckpt.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": 1, "x": _Boom()}, f)
    spec = load(ROOT / "space" / "zoo" / "seed004_12534.yaml")
    data = load_splits(None, val=100, limit=200)
    if os.path.exists("/tmp/cnnsearch-pwned"):
        os.unlink("/tmp/cnnsearch-pwned")
    with pytest.raises(pickle.UnpicklingError):
        fit(build(spec), data, spec.recipe, "cpu", epochs=1, resume=evil)
    assert not os.path.exists("/tmp/cnnsearch-pwned")


def test_weights_are_loaded_without_running_code(tmp_path):
    from results.dashboard import load_weights

    evil = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1)}, evil)  # a valid file first
    assert set(load_weights(evil)) == {"w"}
    with open(evil, "wb") as f:
        pickle.dump(_Boom(), f)
    with pytest.raises(pickle.UnpicklingError):
        load_weights(evil)


@pytest.mark.postgres
def test_a_database_password_never_reaches_output_exports_or_the_note(pg_url, tmp_path, capsys):
    import optuna
    from optuna_dashboard import get_note

    from search.storage import get_storage

    url = pg_url.replace("cnnsearch@", "cnnsearch:s3cr3t-pw@")  # the test server trusts loopback: any password works
    out = tmp_path / "best.yaml"
    rc = search_main(["--budget", "5000", "--trials", "1", "--storage", url, "--study-name", "pw-test",
                      "--out", str(out), "--artifact-dir", str(tmp_path / "art"), *TINY])
    assert rc == 0
    printed = capsys.readouterr()
    assert "s3cr3t" not in printed.out + printed.err
    assert "cnnsearch:***@" in printed.out
    assert "s3cr3t" not in out.read_text()
    study = optuna.load_study(study_name="pw-test", storage=get_storage(url))
    assert "s3cr3t" not in get_note(study)
    for f in (tmp_path / "art").rglob("*"):
        if f.is_file() and f.suffix != ".pt":
            assert b"s3cr3t" not in f.read_bytes(), f
