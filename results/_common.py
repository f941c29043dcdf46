"""What the results commands share: one-line errors, opening a study without creating one, choosing a trial,
and the commented YAML an exported spec is written as."""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.run import Parser, positive_int  # one parser and one number type for every command
from space.analysis import format_table
from space.io import dumps, write_atomic
from space.spec import NetSpec, SpecError

__all__ = ["UsageError", "Parser", "positive_int", "storage_url", "open_study", "choose_trial", "render", "write_text",
           "now_utc", "pct", "device", "run_main"]


class UsageError(Exception):
    """Bad input from the command line: printed as one ``error:`` line, exit status 2."""


def storage_url(url: str | None) -> str:
    from search.storage import DEFAULT_STORAGE

    return url or os.environ.get("CNNSEARCH_STORAGE") or DEFAULT_STORAGE


def open_study(url: str | None, name: str | None) -> tuple[Any, str]:
    """The study ``name`` in the storage at ``url`` (default: the only study there).

    Never creates anything: a journal file that does not exist is an error, not a new, empty storage.
    """
    import optuna

    from search.storage import get_storage, is_rdb, mask_url

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

    from search.run import _best

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
    best = _best(done)
    if best is None:
        under = f" with at most {max_params:,} parameters" if max_params is not None else ""
        raise UsageError(f"study {study.study_name!r} has no completed trial{under}")
    return best


def device(name: Any) -> Any:
    """``--device`` as a torch.device (None: CUDA when there is one); an unusable one is a :class:`UsageError`."""
    from trainer.loop import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as e:
        raise UsageError(f"--device: {e}") from None


def pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _summary(spec: NetSpec) -> list[str]:
    info = spec.info
    lines = []
    prov = info.get("provenance") or {}
    if prov:
        where = f" in {prov['storage']}" if prov.get("storage") else ""
        zoo = f" (zoo network {prov['zoo']})" if prov.get("zoo") else ""
        lines.append(f"from study {prov.get('study')!r}, trial {prov.get('trial')}{zoo}{where}, "
                     f"exported {prov.get('exported', '?')}")
        vers = prov.get("versions") or {}
        if vers:
            lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    m = info.get("metrics") or {}
    if "val_acc" in m:
        search = info.get("search") or {}
        imgs = f" on {search['train_limit']:,} training images" if search.get("train_limit") else ""
        best = f" (best epoch {pct(m['best_val_acc'])})" if m.get("best_val_acc") is not None else ""
        lines.append(f"validation accuracy {pct(m['val_acc'])}{best} after {spec.recipe.epochs} epochs{imgs}")
    if "reproduced" in m:
        r = m["reproduced"]
        lines.append(f"re-trained: validation accuracy {pct(r.get('val_acc'))} (difference "
                     f"{100 * r.get('diff', 0):+.2f} points, tolerance {100 * r.get('tolerance', 0):.2f})")
    test = info.get("test") or {}
    if "acc_mean" in test:
        lines.append(f"test accuracy {pct(test['acc_mean'])} +- {100 * test.get('acc_std', 0):.2f} over "
                     f"{len(test.get('per_seed', []))} seeds, trained on train+validation ({test.get('date', '?')})")
    return lines


def render(spec: NetSpec) -> str:
    """The spec as YAML under a comment header: name, parameters, provenance, metrics, the per-layer table."""
    table = format_table(spec).splitlines()
    params = int(table[-1].split(":")[1])
    # repr: a name with a line break must not break out of the comment
    head = [f"cnnsearch spec {spec.name!r}: {params:,} parameters"] + _summary(spec) + [""] + table
    header = "".join(f"# {line}".rstrip() + "\n" for line in head)
    return header + dumps(spec, header=False)


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


def run_main(body: Any, argv: Sequence[str] | None) -> int:
    """Run a command body; bad input is one line on stderr and exit 2, Ctrl-C is 130."""
    try:
        return int(body(argv))
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2, its line already printed)
        return e.code if isinstance(e.code, int) else 2
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if e.__class__.__name__ == "DataError" and e.__class__.__module__ == "trainer.data":
            print(f"error: {e}", file=sys.stderr)  # a missing or damaged MNIST file
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
