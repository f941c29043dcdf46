"""Where and how the trainer computes: the device, the precision, the CPU threads and the allocator's habits.

Each is asked of the machine once, at the edge (``fit``, ``evaluate``,
``python -m trainer.train``), and then passed down as an argument.
"""

from __future__ import annotations

import ctypes
import functools
import os

import torch

__all__ = ["PRECISIONS", "resolve_device", "cpu_bf16_supported", "resolve_precision", "cpu_threads",
           "keep_freed_memory"]

PRECISIONS = ("fp32", "bf16")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here")
    return dev


@functools.cache
def cpu_bf16_supported() -> bool:
    """Whether oneDNN runs bfloat16 natively on this processor (AVX512-BF16 or AMX): asked once per process."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or a torch that no longer has the query
        return False


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``precision`` checked, or for None the fastest that trains as well: bf16 autocast on CUDA, and on a
    CPU whose oneDNN runs bf16 natively (:func:`cpu_bf16_supported`); fp32 elsewhere.

    "bf16" asked for on a CPU without native support still runs (emulated, slowly).
    """
    if precision is None:
        return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_bf16_supported()) else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} or None (auto), got {precision!r}")
    return precision


def cpu_threads(threads: int | None = None) -> int:
    """``threads``, else ``$CNNSEARCH_THREADS``, else the number of cores this process may run on.

    Several worker processes on one machine each want ``$CNNSEARCH_THREADS=1``
    (``search.run`` sets it): OpenMP threads that outnumber the cores spin at
    every barrier waiting for a descheduled one.
    """
    if threads is None:
        env = os.environ.get("CNNSEARCH_THREADS", "")
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ValueError(f"CNNSEARCH_THREADS must be a positive integer, got {env!r}") from None
        else:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return threads


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks of any size for reuse instead of unmapping them (once per process).

    By default blocks over 32 MB are mmap-ed afresh for every batch: evaluating the
    19,642-parameter seed network at batch 1000 page-faulted 800,000 times per pass
    over 10,000 images (2 s of system time).  Afterwards: none.  Memory then goes
    back to the system when the process ends, not before.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 30) and libc.mallopt(-1, 1 << 30))  # M_MMAP_, M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        return False
