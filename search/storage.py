"""Where studies live: one function turns ``--storage`` into an Optuna storage.

* a path (default ``runs/cnnsearch.log``): Optuna's journal file, safe for many
  worker processes on one host, and opened directly by ``optuna-dashboard``;
* ``postgresql://...`` (or any SQLAlchemy URL): Optuna's RDB storage with
  heartbeats, so a killed worker's trial is failed and retried by another.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from space.spec import SpecError

__all__ = ["DEFAULT_STORAGE", "get_storage", "mask_url", "is_rdb", "HEARTBEAT_S", "claim_lock", "heartbeat"]

DEFAULT_STORAGE = "runs/cnnsearch.log"
HEARTBEAT_S = 5
GRACE_S = 20
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
                return RDBStorage(
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
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as e:
        raise SpecError(f"cannot write {url}: {e.strerror or e}", "--storage") from None


@contextlib.contextmanager
def claim_lock(study: Any, url: str) -> Iterator[None]:
    """A lock held by one worker of ``study`` at a time, across processes (and hosts, for PostgreSQL)."""
    key = int.from_bytes(hashlib.sha1(study.study_name.encode()).digest()[:8], "big", signed=True)
    if url.startswith("postgresql"):
        import sqlalchemy

        engine = getattr(study._storage, "_backend", study._storage).engine  # under Optuna's cache
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    path = url.split(":///", 1)[1] if url.startswith("sqlite:///") else url
    with open(f"{path}.{key & 0xFFFFFFFF:08x}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
