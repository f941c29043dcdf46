"""A trial as a complete, re-trainable spec: architecture, recipe, measured metrics and provenance."""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from space.analysis import format_table
from space.io import dumps, loads, write_atomic
from space.spec import NetSpec, SpecError

__all__ = ["trial_spec", "export_best", "versions", "with_epochs", "render", "pct"]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("cnnsearch", "torch", "torchvision", "optuna"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def with_epochs(spec: NetSpec, epochs: int) -> NetSpec:
    """The spec with its schedule stretched to ``epochs`` (StepLR's step keeps its share of the run)."""
    import dataclasses

    r = spec.recipe
    if epochs == r.epochs:
        return spec
    step = max(1, round(r.step_size * epochs / r.epochs))
    return dataclasses.replace(spec, recipe=dataclasses.replace(r, epochs=epochs, step_size=step))


def trial_spec(study: Any, trial: Any, storage_url: str | None = None) -> NetSpec:
    """The spec a trial trained, with its validation metrics and provenance in ``info``."""
    from search.storage import mask_url

    text = trial.user_attrs.get("spec")
    if not text:
        raise SpecError(f"trial {trial.number} of study {study.study_name!r} has no recorded spec")
    spec = loads(text, f"trial {trial.number}")
    attrs = trial.user_attrs
    metrics: dict[str, Any] = {
        "val_acc": trial.value,
        "best_val_acc": attrs.get("best_val_acc"),
        "val_acc_curve": attrs.get("val_acc_curve"),
        "params": attrs.get("params"),
        "macs": attrs.get("macs"),
        "rf": attrs.get("rf"),
        "train_seconds": attrs.get("train_seconds"),
        "images_per_second": attrs.get("images_per_second"),
        "device": attrs.get("device"),
        "precision": attrs.get("precision"),
    }
    settings = dict(study.user_attrs)
    provenance = {
        "study": study.study_name,
        "trial": trial.number,
        "storage": mask_url(storage_url) if storage_url else None,
        "exported": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "versions": versions(),
    }
    if "zoo" in attrs:
        provenance["zoo"] = attrs["zoo"]
    name = f"{study.study_name}-t{trial.number}"
    info = dict(spec.info) | {
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "search": {k: settings[k] for k in ("budget", "epochs", "train_limit", "val", "seed") if k in settings}
        | {k: attrs[k] for k in ("train_limit", "epochs", "rung") if k in attrs},  # the fidelity it was trained at
        "provenance": {k: v for k, v in provenance.items() if v is not None},
    }
    if isinstance(settings.get("dataset"), dict):  # name and content hash of the data it was trained on
        info["dataset"] = dict(settings["dataset"])
    return NetSpec(layers=spec.layers, input=spec.input, classes=spec.classes, name=name,
                   recipe=spec.recipe, info=info)


def export_best(study: Any, trial: Any, out: str | Path, storage_url: str | None = None,
                epochs: int | None = None) -> NetSpec:
    """Write the trial's spec to ``out`` (atomically); ``epochs`` re-plans its recipe for a longer run."""
    spec = trial_spec(study, trial, storage_url)
    if epochs:
        spec = with_epochs(spec, epochs)
        spec.info["search"]["export_epochs"] = epochs
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, render(spec))
    except OSError as e:
        raise SpecError(f"cannot write: {e.strerror or e}").in_file(str(out)) from None
    return spec


def pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


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
    data = info.get("dataset") or {}
    if data.get("name"):
        shape = "x".join(str(v) for v in data.get("input", ()))
        lines.append(f"data: {data['name']}, {shape} inputs, {data.get('classes', '?')} classes, "
                     f"SHA-256 {str(data.get('sha256', '?'))[:16]}...")
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
