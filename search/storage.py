"""Where studies live: one function turns ``--storage`` into an Optuna storage.

* a path (default ``runs/cnnsearch.log``): Optuna's journal file, safe for many
  worker processes on one host, and opened directly by ``optuna-dashboard``;
* ``postgresql://...`` (or any SQLAlchemy URL): Optuna's RDB storage with
  heartbeats, so a killed worker's trial is failed and retried by another.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from space.spec import SpecError

__all__ = ["DEFAULT_STORAGE", "get_storage", "mask_url", "is_rdb", "HEARTBEAT_S"]

DEFAULT_STORAGE = "runs/cnnsearch.log"
HEARTBEAT_S = 5
GRACE_S = 20
_URL = re.compile(r"^[a-z][a-z0-9+]*://")


def is_rdb(url: str) -> bool:
    return bool(_URL.match(url))


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs, notes and exported files)."""
    return re.sub(r"^([a-z][a-z0-9+]*://[^:/@]*):[^@]*@", r"\1:***@", url)


def get_storage(url: str | None, *, heartbeat: int = HEARTBEAT_S,
                grace: int = GRACE_S) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; a bad URL or an unreachable database raises :class:`SpecError`."""
    url = url or DEFAULT_STORAGE
    if is_rdb(url):
        if not url.startswith(("postgresql", "sqlite", "mysql")):
            raise SpecError(f"unsupported storage URL {mask_url(url)!r}: use a file path, "
                            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB or sqlite:///FILE", "--storage")
        try:
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
