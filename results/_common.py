"""What the results commands share: one-line errors, opening a study without creating one, choosing a trial,
and the commented YAML an exported spec is written as."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from search.export import pct, render
from search.storage import DEFAULT_STORAGE, get_storage, is_rdb, mask_url
from search.study import best
from space.cli import Parser, UsageError, positive_int, run_main
from space.io import write_atomic
from space.spec import SpecError

__all__ = ["UsageError", "Parser", "positive_int", "storage_url", "open_study", "choose_trial", "render", "write_text",
           "now_utc", "pct", "device", "run_main"]


def storage_url(url: str | None) -> str:
    return url or os.environ.get("CNNSEARCH_STORAGE") or DEFAULT_STORAGE


def open_study(url: str | None, name: str | None) -> tuple[Any, str]:
    """The study ``name`` in the storage at ``url`` (default: the only study there).

    Never creates anything: a journal file that does not exist is an error, not a new, empty storage.
    """
    import optuna

    url = storage_url(url)
    local = url.split(":///", 1)[1] if url.startswith("sqlite:///") else None if is_rdb(url) else url
    if local is not None and not Path(local).is_file():  # opening would create an empty storage
        raise UsageError(f"no study storage at {url} (run python -m search.run first, or give --storage)")
    try:
        storage = get_storage(url)
    except SpecError as e:
        raise UsageError(str(e)) from None
    names = optuna.study.get_all_study_names(storage)
    if not names:
        raise UsageError(f"no studies in {mask_url(url)}")
    if name is None:
        if len(names) > 1:
            raise UsageError(f"{len(names)} studies in {mask_url(url)} ({', '.join(sorted(names))}); "
                             "choose one with --study")
        name = names[0]
    elif name not in names:
        raise UsageError(f"no study {name!r} in {mask_url(url)} (there: {', '.join(sorted(names))})")
    return optuna.load_study(study_name=name, storage=storage), url


def choose_trial(study: Any, number: int | None = None, max_params: int | None = None) -> Any:
    """The best completed trial, trial ``number``, or the best one with at most ``max_params`` parameters."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if number is not None:
        match = [t for t in trials if t.number == number]
        if not match:
            raise UsageError(f"study {study.study_name!r} has no trial {number} (trials 0..{len(trials) - 1})")
        t = match[0]
        if "spec" not in t.user_attrs:
            raise UsageError(f"trial {number} of study {study.study_name!r} has no recorded spec ({t.state.name})")
        return t
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if max_params is not None:
        done = [t for t in done if t.user_attrs.get("params", max_params + 1) <= max_params]
    top = best(done)
    if top is None:
        under = f" with at most {max_params:,} parameters" if max_params is not None else ""
        raise UsageError(f"study {study.study_name!r} has no completed trial{under}")
    return top


def device(name: Any) -> Any:
    """``--device`` as a torch.device (None: CUDA when there is one); an unusable one is a :class:`UsageError`."""
    from space.cli import resolve_device

    return resolve_device(name)


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically, creating the folder; an unwritable place is a :class:`UsageError`."""
    p = Path(path)
    try:
        if p.is_dir():
            raise UsageError(f"{p} is a directory; give a file name")
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(p, 0o666 & ~umask)  # mkstemp made it private; a report or spec is for sharing
    except OSError as e:
        raise UsageError(f"cannot write {p}: {e.strerror or e}") from None
