"""Faults of the journal file: a record torn by a crash, and a full disk while writing."""

import errno
import json
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, TINY, search_cmd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search.storage import JournalWriteError, get_storage, repair_journal

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY = "budget-3000"


def _search(storage: Path, trials: int, tmp: Path, **kw) -> subprocess.CompletedProcess:
    cmd = search_cmd("--budget", 3000, "--trials", trials, *TINY, "--storage", storage, "--quiet",
                     "--out", tmp / "best.yaml", "--artifact-dir", tmp / "artifacts")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)


def _records(path: Path) -> list[dict]:
    """Every line of the journal, each a complete JSON record (raises on anything half-written)."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.splitlines()]


def _plain_study(path: Path):
    """The study as Optuna alone reads ``path`` (no repair): the oracle."""
    return optuna.load_study(study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(path))))


def _summary(study):
    return [(t.number, t.state, t.params, t.value) for t in study.get_trials()]


@pytest.fixture(scope="module")
def journal(tmp_path_factory) -> Path:
    """The journal of a real 2-trial tiny search, written by ``python -m search.run``."""
    tmp = tmp_path_factory.mktemp("journal")
    r = _search(tmp / "s.log", 2, tmp)
    assert r.returncode == 0, r.stderr
    return tmp / "s.log"


# seeded: the same three torn lengths on every run
_CUTS = random.Random(20261201).sample(range(1, 10_000), 3)


@pytest.mark.slow
@pytest.mark.parametrize("draw", _CUTS)
def test_a_journal_torn_in_its_last_record_opens_with_one_warning_and_the_study_resumes(journal, tmp_path, draw,
                                                                                       capsys):
    data = journal.read_bytes()
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    keep = 1 + draw % (len(data) - 1 - start - 1)  # 1 .. len(record) - 1 bytes of the record, never its newline
    torn = tmp_path / "s.log"
    torn.write_bytes(data[:start + keep])
    complete = tmp_path / "complete.log"  # the oracle: the journal of the complete records only
    complete.write_bytes(data[:start])

    capsys.readouterr()
    storage = get_storage(str(torn))
    err = capsys.readouterr().err
    assert err == f"warning: {torn}: dropped a torn last record ({keep} bytes) left by a crash\n"
    assert torn.read_bytes() == data[:start]
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert _summary(study) == _summary(_plain_study(complete))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2

    get_storage(str(torn))  # nothing left to repair: silent
    assert capsys.readouterr().err == ""

    r = _search(torn, 3, tmp_path)  # the rerun adds a trial and finishes the study
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    _records(torn)
    assert len(_plain_study(torn).get_trials(states=(TrialState.COMPLETE,))) == 3


def test_without_the_repair_optuna_glues_the_next_record_onto_the_torn_one(journal, tmp_path):
    """Why the repair is needed: Optuna 4/5 skip a torn last line when reading, then append after it."""
    data = journal.read_bytes()
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    torn = tmp_path / "s.log"
    torn.write_bytes(data[:start + 10])
    study = _plain_study(torn)
    study.set_user_attr("a", 1)  # glued onto the torn bytes: this line does not parse
    with pytest.raises(ValueError):  # and from now on nothing after it can be read
        study.set_user_attr("b", 2)
    with pytest.raises(ValueError):
        _plain_study(torn)


def test_a_last_record_missing_only_its_newline_is_kept(journal, tmp_path, capsys):
    data = journal.read_bytes()
    path = tmp_path / "s.log"
    path.write_bytes(data[:-1])
    capsys.readouterr()
    assert repair_journal(path) == 0
    assert capsys.readouterr().err == ""
    assert path.read_bytes() == data


def test_the_repair_never_cuts_a_record_a_live_writer_is_writing(journal, tmp_path, monkeypatch):
    """A writer holds the journal's lock while its record is half on disk: the repair waits for it."""
    from optuna.storages.journal import JournalFileSymlinkLock

    path = tmp_path / "s.log"
    shutil.copyfile(journal, path)
    record = b'{"op_code":0,"worker_id":"w","study_name":"live","directions":[1]}\n'
    writer = JournalFileSymlinkLock(str(path))
    writer.acquire()
    with open(path, "ab") as f:
        f.write(record[:20])  # half of it, as a writer mid-write leaves it
    waiting = threading.Event()
    real = JournalFileSymlinkLock.acquire

    def acquire(self):
        waiting.set()
        return real(self)

    monkeypatch.setattr(JournalFileSymlinkLock, "acquire", acquire)
    result = []
    t = threading.Thread(target=lambda: result.append(repair_journal(path)))
    t.start()
    assert waiting.wait(60), "the repair never asked for the lock"
    with open(path, "ab") as f:
        f.write(record[20:])
    writer.release()
    t.join(60)
    assert result == [0]
    assert path.read_bytes() == journal.read_bytes() + record


# ---------------------------------------------------------------- a full disk

_HARD_FSIZE = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
needs_fsize_limit = pytest.mark.skipif(
    _HARD_FSIZE != resource.RLIM_INFINITY and _HARD_FSIZE < 1 << 24,
    reason=f"the hard file-size limit ({_HARD_FSIZE} bytes) is too small to let a journal grow and then fill up")


def _file_size_limit(limit: int):
    """In the child: writes past ``limit`` bytes fail with EFBIG (SIGXFSZ, which would kill it, ignored)."""
    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return setup


_APPEND_PAST_THE_LIMIT = """
import resource, signal, sys
import optuna
from search.storage import JournalWriteError, get_storage
path, extra = sys.argv[1], int(sys.argv[2])
study = optuna.load_study(study_name="budget-3000", storage=get_storage(path))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
size = __import__("os").path.getsize(path)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + extra, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    study.set_user_attr("big", "x" * 5000)
except JournalWriteError as e:
    print(e.errno)
    print(e)
    sys.exit(3)
"""


@needs_fsize_limit
@pytest.mark.parametrize("extra", [0, 1, 2500])
def test_an_append_that_fails_on_a_full_disk_raises_one_line_and_leaves_the_journal_as_it_was(journal, tmp_path,
                                                                                              extra):
    path = tmp_path / "s.log"
    shutil.copyfile(journal, path)
    before = path.read_bytes()
    r = subprocess.run([sys.executable, "-c", _APPEND_PAST_THE_LIMIT, str(path), str(extra)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    code, message = r.stdout.splitlines()
    assert int(code) == errno.EFBIG
    assert message == (f"--storage: cannot write {path}: File too large "
                       "(the journal is left as it was before this write)")
    assert path.read_bytes() == before  # the part of the record that fitted was cut off again
    study = _plain_study(path)
    assert "big" not in study.user_attrs
    study.set_user_attr("after", 1)  # and the journal takes the next write
    assert _plain_study(path).user_attrs["after"] == 1


def test_journal_write_error_is_a_spec_error_so_commands_print_it_in_one_line():
    from space.spec import SpecError

    assert issubclass(JournalWriteError, SpecError)
    assert str(JournalWriteError("cannot write x: No space left on device")).count("\n") == 0


def _new_trial(before: bytes, after: bytes) -> tuple[int, int, int]:
    """Where the trial a search added to a journal (``before`` -> ``after``) lies, in bytes past the end of
    ``before``: its creation, the start of its completion record, and the end of that record."""
    offsets, end = [], 0
    for line in after[len(before):].splitlines(keepends=True):
        offsets.append((end, len(line), json.loads(line)))
        end += len(line)
    created = [at for at, _, r in offsets if r["op_code"] == 4]  # CREATE_TRIAL
    assert len(created) == 1, created
    done = [(at, n) for at, n, r in offsets if r["op_code"] == 6 and r["state"] == 1]  # SET_TRIAL_STATE_VALUES
    assert len(done) == 1, done
    return created[0], done[0][0], done[0][0] + done[0][1]


def _pad(path: Path, size: int = 1 << 20) -> None:
    """Grow the journal by ``size`` bytes (another study's attribute).  The file-size limit holds for every
    file the search writes, so the journal must be the largest of them: a trial's checkpoint (tens of kB)
    then stays under the limit, and only the journal hits it."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    optuna.create_study(study_name="padding", storage=storage).set_user_attr("padding", "x" * size)


# The disk fills up as the next search opens the study (every record is longer than 50 bytes), halfway
# through the bytes its trial writes, and halfway through the record that completes the trial.  Where those
# lie is measured on a rehearsal: the same seeded search on a copy, with room.
@pytest.mark.slow
@needs_fsize_limit
@pytest.mark.parametrize("where", ["open", "mid-trial", "completion"])
def test_a_search_whose_journal_write_fails_ends_in_one_line_exit_2_and_resumes(journal, tmp_path, where):
    path = tmp_path / "s.log"
    shutil.copyfile(journal, path)
    _pad(path)
    before = path.read_bytes()
    rehearsal = tmp_path / "rehearsal"
    rehearsal.mkdir()
    shutil.copyfile(path, rehearsal / "s.log")
    assert _search(rehearsal / "s.log", 3, rehearsal).returncode == 0
    created, done, end = _new_trial(before, (rehearsal / "s.log").read_bytes())
    extra = {"open": 50, "mid-trial": (created + done) // 2, "completion": (done + end) // 2}[where]
    r = _search(path, 3, tmp_path, preexec_fn=_file_size_limit(len(before) + extra))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: --storage: cannot write"), r.stderr
    assert "File too large" in r.stderr
    _records(path)  # nothing half-written
    assert len(_plain_study(path).get_trials(states=(TrialState.COMPLETE,))) == 2
    r = _search(path, 3, tmp_path)  # room again: the same command finishes the study
    assert r.returncode == 0, r.stderr
    _records(path)
    assert len(_plain_study(path).get_trials(states=(TrialState.COMPLETE,))) == 3
