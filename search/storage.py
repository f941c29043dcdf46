"""Where studies live: one function turns ``--storage`` into an Optuna storage.

* a path (default ``runs/cnnsearch.log``): Optuna's journal file, safe for many
  worker processes on one host, and opened directly by ``optuna-dashboard``;
* ``postgresql://...`` (or any SQLAlchemy URL): Optuna's RDB storage with
  heartbeats, so a killed worker's trial is failed and retried by another.

Faults of a real deployment are survived here, below Optuna:

* a journal whose last record was torn by a crash (or a full disk) mid-write is
  cut back to its last complete record when it is opened, with one warning line;
* a write that fails (full disk, file-size limit) leaves the journal as it was
  and raises :class:`JournalWriteError`, one line;
* a PostgreSQL server that restarts: every storage call is retried with backoff
  for up to ``RETRY_S`` seconds, then raises :class:`StorageUnavailable`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._file import get_lock_file

from space.spec import SpecError

__all__ = ["DEFAULT_STORAGE", "get_storage", "mask_url", "is_rdb", "HEARTBEAT_S", "RETRY_S", "claim_lock",
           "heartbeat", "JournalWriteError", "StorageUnavailable", "repair_journal"]

DEFAULT_STORAGE = "runs/cnnsearch.log"
HEARTBEAT_S = 5
GRACE_S = 20
RETRY_S = 30.0  # how long a storage call waits for a lost database connection to come back
_URL = re.compile(r"^[a-z][a-z0-9+]*://")


def is_rdb(url: str) -> bool:
    return bool(_URL.match(url))


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs, notes and exported files)."""
    return re.sub(r"^([a-z][a-z0-9+]*://[^:/@]*):[^@]*@", r"\1:***@", url)


def _heartbeat_settings() -> tuple[int, int]:
    """Heartbeat interval and grace period in seconds; ``CNNSEARCH_HEARTBEAT=INTERVAL,GRACE`` overrides."""
    raw = os.environ.get("CNNSEARCH_HEARTBEAT")
    if not raw:
        return HEARTBEAT_S, GRACE_S
    try:
        interval, grace = (int(v) for v in raw.split(","))
        if interval < 1 or grace <= interval:
            raise ValueError
    except ValueError:
        raise SpecError(f"must be INTERVAL,GRACE in seconds with GRACE > INTERVAL >= 1, got {raw!r}",
                        "CNNSEARCH_HEARTBEAT") from None
    return interval, grace


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Workers started together on a fresh PostgreSQL database would race to create Optuna's tables:
    one at a time, under an advisory lock."""
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_KEY})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_KEY})
    finally:
        engine.dispose()


_SCHEMA_KEY = 0x636E6E73  # "cnns"


def get_storage(url: str | None) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; a bad URL or an unreachable database raises :class:`SpecError`."""
    url = url or DEFAULT_STORAGE
    heartbeat, grace = _heartbeat_settings()
    if is_rdb(url):
        if not url.startswith(("postgresql", "sqlite", "mysql")):
            raise SpecError(f"unsupported storage URL {mask_url(url)!r}: use a file path, "
                            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB or sqlite:///FILE", "--storage")
        try:
            with warnings.catch_warnings(), _schema_lock(url):  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return (_RetryingRDBStorage if url.startswith("postgresql") else RDBStorage)(
                    url, heartbeat_interval=heartbeat, grace_period=grace,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                    engine_kwargs={"pool_pre_ping": True} if url.startswith("postgresql") else None,
                )
        except Exception as e:  # sqlalchemy's many connection errors
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise SpecError(f"cannot open {mask_url(url)}: {mask_url(first)}", "--storage") from None
    path = Path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise SpecError(f"{url} is a directory; give a file path for the journal", "--storage")
        with open(path, "ab"):
            pass
        repair_journal(path)
        return JournalStorage(_JournalFile(str(path)))
    except OSError as e:
        raise SpecError(f"cannot write {url}: {e.strerror or e}", "--storage") from None


# ---------------------------------------------------------------- the journal file


class JournalWriteError(SpecError):
    """Appending to the journal failed (a full disk, a file-size limit, an I/O error).

    The journal has been cut back to where it was before the write, so no half-written
    record is left; the message is one line.  ``errno`` is the failed call's.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message, "--storage")
        self.errno = errno


class _JournalFile(JournalFileBackend):
    """Optuna's journal file, whose failed appends leave nothing behind (see :class:`JournalWriteError`)."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        try:
            with get_lock_file(self._lock):
                fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
                try:
                    end = os.fstat(fd).st_size
                    try:
                        view = memoryview(data)
                        while view:  # a write can be short just below a size limit
                            view = view[os.write(fd, view):]
                        os.fsync(fd)
                    except OSError:
                        with contextlib.suppress(OSError):  # shrinking needs no space
                            os.ftruncate(fd, end)
                            os.fsync(fd)
                        raise
                finally:
                    os.close(fd)
        except OSError as e:
            raise JournalWriteError(f"cannot write {self._file_path}: {e.strerror or e} "
                                    "(the journal is left as it was before this write)", e.errno) from None


def repair_journal(path: str | os.PathLike[str]) -> int:
    """Cut a torn last record (a crash or a full disk mid-write) off the journal at ``path``.

    A torn record is a last line that does not end in a newline and does not parse as JSON;
    a last line that parses but lacks its newline is completed instead.  Optuna itself skips
    a torn last line when reading, but its next append is glued onto it, which makes the
    journal unreadable from then on.  The check is made again under the journal's own lock,
    so a live writer's record is never cut.  Returns the number of bytes dropped (and prints
    one warning line when there were any).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:  # the common case, without the lock: empty, or ends in a newline
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
    with get_lock_file(JournalFileSymlinkLock(path)), open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        start = _last_line_start(f, size)
        f.seek(start)
        tail = f.read()
        if not tail or tail.endswith(b"\n"):  # a writer finished it while we waited for the lock
            return 0
        try:
            json.loads(tail)
        except ValueError:
            os.ftruncate(f.fileno(), start)
        else:
            f.seek(size)
            f.write(b"\n")
            f.flush()
            tail = b""
        os.fsync(f.fileno())
    if tail:
        print(f"warning: {path}: dropped a torn last record ({len(tail)} bytes) left by a crash", file=sys.stderr)
    return len(tail)


def _last_line_start(f: Any, size: int, chunk: int = 1 << 16) -> int:
    """The offset just after the last newline before ``size`` (0 if there is none)."""
    pos = size
    while pos > 0:
        step = min(chunk, pos)
        f.seek(pos - step)
        i = f.read(step).rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


# ---------------------------------------------------------------- PostgreSQL restarts


class StorageUnavailable(SpecError):
    """The database stayed unreachable for longer than ``RETRY_S`` seconds; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "--storage")


def _connection_lost(e: BaseException) -> BaseException | None:
    """The lost or refused connection behind ``e`` (``e`` itself or what caused it: Optuna wraps SQLAlchemy's
    errors), or None when ``e`` is something else."""
    import sqlalchemy.exc as sa

    try:
        import psycopg
        dbapi: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
    except ImportError:  # pragma: no cover - another driver
        dbapi = ()
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 8:
        if isinstance(cur, (sa.OperationalError, sa.InterfaceError, sa.PendingRollbackError, *dbapi)) or (
                isinstance(cur, sa.DBAPIError) and cur.connection_invalidated):
            return cur
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return None


_local = threading.local()  # depth of retrying calls on this thread: only the outermost one retries


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else e.__class__.__name__


def _with_retry(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: _RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0):
            return method(self, *args, **kwargs)
        _local.depth = 1
        try:
            return self._retry(method, args, kwargs)
        finally:
            _local.depth = 0
    return call


class _RetryingRDBStorage(RDBStorage):
    """Optuna's RDB storage whose calls ride out a restart of the database server.

    ``pool_pre_ping`` replaces connections that died while idle in the pool; a call that
    still fails on a lost or refused connection is run again with exponential backoff for up
    to ``RETRY_S`` seconds (each call is one transaction, rolled back by the server when its
    connection went), then :class:`StorageUnavailable` is raised.  A state change that had
    been committed just before the connection went is recognised on the retry.
    """

    retry_s = RETRY_S

    def _retry(self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        end = time.monotonic() + self.retry_s
        delay, lost = 0.1, None
        while True:
            try:
                return method(self, *args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if (lost is not None and method.__name__ == "set_trial_state_values"
                        and self._already_set(*args, **kwargs)):
                    return True
                raise
            except Exception as e:
                cause = _connection_lost(e)
                if cause is None:
                    raise
                if lost is None:
                    print(f"warning: {mask_url(self.url)}: {method.__name__} lost its connection "
                          f"({mask_url(_first_line(cause))}); retrying for up to {self.retry_s:g} s",
                          file=sys.stderr, flush=True)
                lost = cause
                left = end - time.monotonic()
                if left <= 0:
                    raise StorageUnavailable(f"lost the connection to {mask_url(self.url)} for over "
                                             f"{self.retry_s:g} s: {mask_url(_first_line(cause))}") from None
                with contextlib.suppress(Exception):
                    self.remove_session()  # a session left in a failed transaction is not reused
                time.sleep(min(delay, left))
                delay = min(delay * 2, 4.0)

    def _already_set(self, trial_id: int, state: Any, values: Any = None, *_: Any) -> bool:
        """Whether the trial already has ``state`` (and ``values``): our own commit, whose reply was lost."""
        t = RDBStorage.get_trial(self, trial_id)
        return bool(t.state == state and (values is None or list(t.values or []) == list(values)))


# every call Optuna makes on an RDB storage, its cache (_CachedStorage) and its heartbeat thread
_RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial",
    "set_trial_param", "_set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_params", "get_trial",
    "get_all_trials", "_get_trials", "get_n_trials", "get_best_trial", "_get_best_trial_id", "record_heartbeat",
    "_get_stale_trial_ids",
)
for _name in _RETRIED:
    setattr(_RetryingRDBStorage, _name, _with_retry(getattr(RDBStorage, _name)))
del _name


@contextlib.contextmanager
def claim_lock(study: Any, url: str) -> Iterator[None]:
    """A lock held by one worker of ``study`` at a time, across processes (and hosts, for PostgreSQL)."""
    key = int.from_bytes(hashlib.sha1(study.study_name.encode()).digest()[:8], "big", signed=True)
    if url.startswith("postgresql"):
        engine = getattr(study._storage, "_backend", study._storage).engine  # under Optuna's cache
        with _pg_session_lock(engine, key):
            yield
        return
    path = url.split(":///", 1)[1] if url.startswith("sqlite:///") else url
    with open(f"{path}.{key & 0xFFFFFFFF:08x}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _pg_session_lock(engine: Any, key: int, retry_s: float = RETRY_S) -> Iterator[None]:
    """A PostgreSQL advisory lock on a connection of its own.  Taking it is retried (with backoff, for up to
    ``retry_s`` seconds) while the server restarts; if the server goes while the lock is held, the lock went
    with its session, so releasing it is skipped."""
    import sqlalchemy

    end, delay = time.monotonic() + retry_s, 0.1
    while True:
        conn = None
        try:
            conn = engine.connect()
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            break
        except Exception as e:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            cause = _connection_lost(e)
            if cause is None:
                raise
            if time.monotonic() >= end:
                raise StorageUnavailable(f"lost the connection to {mask_url(str(engine.url))} for over "
                                         f"{retry_s:g} s: {mask_url(_first_line(cause))}") from None
            time.sleep(min(delay, max(0.0, end - time.monotonic())))
            delay = min(delay * 2, 4.0)
    assert conn is not None
    try:
        yield
    finally:
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        except Exception as e:
            if _connection_lost(e) is None:
                raise
        finally:
            with contextlib.suppress(Exception):
                conn.close()


@contextlib.contextmanager
def heartbeat(study: Any, trial: Any) -> Iterator[None]:
    """Optuna's heartbeat thread for a running trial (RDB storages with heartbeats; a no-op otherwise)."""
    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:  # pragma: no cover - a future Optuna moved it
        yield
        return
    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield
