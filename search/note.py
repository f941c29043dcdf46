"""What ``optuna-dashboard`` shows beyond the trials: a study note and the best network's files.

:func:`annotate` writes a Markdown note on the study (budget, best trial, its per-layer table, the
Pareto front) and uploads the best trial's spec YAML (and its weights, when given) as Optuna
artifacts, downloadable from the dashboard's study page::

    optuna-dashboard runs/cnnsearch.log --artifact-dir runs/artifacts

Optuna refuses new attributes on a finished trial, so the files are study artifacts, named after
the trial (``best-t12.yaml``, ``best-t12.pt``).  ``python -m search.run`` calls it at the end of a
search; ``python -m results.dashboard`` does the same for an existing study.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.export import pct, render, trial_spec
from search.storage import DEFAULT_STORAGE, is_rdb, mask_url
from search.study import best as best_trial
from search.study import pareto_front, state_counts

__all__ = ["Annotation", "annotate", "study_note", "default_artifact_dir", "load_weights"]


@dataclass
class Annotation:
    """What :func:`annotate` did: the note, the artifacts it uploaded (file name -> artifact id), what it
    left out and why, and any error it swallowed."""

    note: bool = False
    artifacts: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    best_trial: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        out = [f"study note: {'written' if self.note else 'not written'}"]
        out += [f"artifact: {name} ({aid})" for name, aid in self.artifacts.items()]
        out += [f"skipped: {s}" for s in self.skipped]
        out += [f"error: {e}" for e in self.errors]
        return out


def default_artifact_dir(storage_url: str | None) -> Path:
    """``artifacts/`` beside a journal file (``runs/cnnsearch.log`` -> ``runs/artifacts``); ``runs/artifacts``
    for a database."""
    url = storage_url or os.environ.get("CNNSEARCH_STORAGE") or DEFAULT_STORAGE
    return Path("runs/artifacts") if is_rdb(url) else Path(url).parent / "artifacts"


def _table(rows: list[list[str]], head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|"] \
        + ["| " + " | ".join(r) + " |" for r in rows]


def study_note(study: Any, trials: Sequence[Any] | None = None, best: Any = None,
               artifacts: Mapping[str, str] | None = None, storage_url: str | None = None) -> str:
    """The study note: settings, trial counts, the best trial with its per-layer table, the Pareto front."""
    from space.analysis import format_table

    trials = list(study.get_trials(deepcopy=False) if trials is None else trials)
    best = best if best is not None else best_trial(trials)
    s = study.user_attrs
    budget = s.get("budget")
    states = state_counts(trials)
    lines = [f"# {study.study_name}", ""]
    settings = [f"budget **{budget:,}** parameters" if budget else "budget unknown"]
    if s.get("epochs"):
        settings.append(f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''} per trial")
    if s.get("train_limit"):
        settings.append(f"first {s['train_limit']:,} training images")
    if s.get("val"):
        settings.append(f"{s['val']:,} validation images")
    lines += [", ".join(settings) + ".", "",
              f"{len(trials)} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(states.items())) + ".", ""]
    if best is None:
        lines.append("No trial has completed yet.")
        return "\n".join(lines) + "\n"
    p = best.user_attrs.get("params")
    use = f" ({p / budget:.0%} of the budget)" if p and budget else ""
    zoo = f", zoo network `{best.user_attrs['zoo']}`" if best.user_attrs.get("zoo") else ""
    lines += ["## Best trial", "",
              f"Trial **{best.number}**{zoo}: validation accuracy **{pct(best.value)}**, "
              f"**{p:,}** parameters{use}, {best.user_attrs.get('macs', 0):,} MACs, "
              f"receptive field {best.user_attrs.get('rf', '-')}.", ""]
    try:
        spec = trial_spec(study, best)
        lines += ["```", format_table(spec), "```", ""]
        r = spec.recipe
        lines += [f"Recipe: {r.optimizer} lr {r.lr:g}, {r.scheduler} schedule, batch {r.batch_size}, "
                  f"{r.epochs} epoch{'s' if r.epochs != 1 else ''}, weight decay {r.weight_decay:g}, "
                  f"label smoothing {r.label_smoothing:g}.", ""]
    except Exception as e:  # a note without the table is better than no note
        lines += [f"(no per-layer table: {e})", ""]
    if artifacts:
        lines += ["Files (study artifacts, below): " + ", ".join(f"`{n}`" for n in artifacts) + ".", ""]
    url = mask_url(storage_url) if storage_url else "STORAGE"
    lines += ["Export and verify it, then measure it once on the test set:", "", "```",
              f"python -m results.export --storage {url} --study {study.study_name} --out best.yaml --verify",
              "python -m results.evaluate best.yaml --seeds 3", "```", ""]
    front = pareto_front(trials)
    if front:
        lines += ["## Pareto front", "", "Validation accuracy against parameters, among the trials trained at the "
                  "highest fidelity reached: no other of them is both smaller and more accurate.", ""]
        rows = [[str(t.number), f"{t.user_attrs['params']:,}", pct(t.value),
                 str(t.user_attrs.get("zoo", ""))] for t in front]
        lines += _table(rows, ["trial", "params", "val acc", "zoo"]) + [""]
    return "\n".join(lines) + "\n"


def _stored(store: Any, artifact_id: str) -> bool:
    try:
        store.open_reader(artifact_id).close()
        return True
    except Exception:
        return False


def _state_dict(weights: Any) -> Mapping[str, Any] | None:
    if weights is None:
        return None
    if isinstance(weights, (str, os.PathLike)):  # a file saved by a worker process
        weights = load_weights(weights)
    if hasattr(weights, "state_dict") and callable(weights.state_dict):
        weights = weights.state_dict()
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a module or a state_dict, got {type(weights).__name__}")
    return {k: v.detach().cpu() if hasattr(v, "detach") else v for k, v in weights.items()}


def load_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state_dict saved by :func:`annotate` (``torch.load(weights_only=True)``: no code runs)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def annotate(study: Any, storage_url: str | None = None, artifact_dir: str | os.PathLike[str] | None = None, *,
             trial: Any = None, weights: Any = None, note: bool = True, upload: bool = True) -> Annotation:
    """Write the study note and upload the best trial's spec (and ``weights``) as study artifacts.

    ``weights`` is the trained network of ``trial`` (the best trial when not given): a module, a
    state_dict, or the path of a ``torch.save``-d state_dict; it must fit the trial's network (checked
    by loading it into a fresh build of the spec).  Without it no weights file is uploaded.  Files already
    uploaded under the same name are not uploaded again, so calling this at the end of every resumed run
    is cheap.  It never raises (except on Ctrl-C): what went wrong is in :attr:`Annotation.errors`, and a
    failed upload still leaves the note written.
    """
    res = Annotation()
    try:
        trials = study.get_trials(deepcopy=False)
        best = trial if trial is not None else best_trial(trials)
    except Exception as e:
        res.errors.append(_why(e))
        return res
    res.best_trial = None if best is None else best.number
    if best is None:
        res.skipped.append("artifacts: no completed trial")
    elif upload:
        try:
            _upload(study, best, storage_url, artifact_dir, weights, res)
        except Exception as e:
            res.errors.append(_why(e))
    if note:
        try:
            import optuna
            from optuna.artifacts import get_all_artifact_meta
            from optuna_dashboard import get_note, save_note

            files = {m.filename: m.artifact_id for m in get_all_artifact_meta(study)}  # this call's and earlier
            body = study_note(study, trials, best, files, storage_url)
            if not isinstance(study, optuna.Study):  # pragma: no cover - a study is what the callers pass
                raise TypeError(f"not an optuna.Study: {type(study).__name__}")
            if get_note(study) != body:  # each save is a new version of the note
                save_note(study, body)
            res.note = True
        except Exception as e:
            res.errors.append("note: " + _why(e))
    return res


def _why(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{e.__class__.__name__}: {e}{where}"


def _upload(study: Any, best: Any, storage_url: str | None, artifact_dir: str | os.PathLike[str] | None,
            weights: Any, res: Annotation) -> None:
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

    from space.build import build

    adir = Path(artifact_dir) if artifact_dir is not None else default_artifact_dir(storage_url)
    adir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(adir))
    have = {m.filename: m.artifact_id for m in get_all_artifact_meta(study)}
    stem = f"best-t{best.number}"
    spec = trial_spec(study, best, storage_url)
    with tempfile.TemporaryDirectory(prefix="cnnsearch-artifacts-") as tmp:
        files = [Path(tmp) / f"{stem}.yaml"]
        files[0].write_text(render(spec), encoding="utf-8")
        try:
            sd = _state_dict(weights)
            if sd is None:
                res.skipped.append(f"{stem}.pt: no weights given")
            else:
                import torch

                build(spec).load_state_dict(sd)  # the weights fit this trial's network (raises if not)
                files.append(Path(tmp) / f"{stem}.pt")
                torch.save(sd, files[-1])
        except Exception as e:
            res.errors.append(f"weights of trial {best.number}: {_why(e)}")
        for f in files:
            if f.name in have and _stored(store, have[f.name]):
                res.skipped.append(f"{f.name}: already uploaded")
                continue
            aid = upload_artifact(artifact_store=store, file_path=str(f), study_or_trial=study,
                                  mimetype="text/yaml" if f.suffix == ".yaml" else "application/octet-stream")
            res.artifacts[f.name] = aid
