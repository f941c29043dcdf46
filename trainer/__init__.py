"""The trainer: the data on the training device, batched augmentation, and the loop every trial runs.

The data are one of :mod:`trainer.datasets`' kinds (mnist, fashion, idx, folder), read, checked and
normalised by their training images' own statistics in :mod:`trainer.data`.

    from trainer import load_splits, fit
    data = load_splits(device=dev)                 # train / val; never the test set
    torch.manual_seed(spec.recipe.seed)
    result = fit(build(spec), data, spec.recipe, dev, report=lambda epoch, m: ...)

It knows nothing of Optuna (``report`` is a plain callback).  Forward passes run
under bf16 autocast on CUDA and on a CPU whose oneDNN runs bf16 natively, in
fp32 elsewhere (``fit(precision="fp32" | "bf16")`` to choose; the choice is
``FitResult.precision``).  On an AVX512-BF16 CPU with channels_last a training
step of the seed network took 26 ms in bf16 against 42 ms in fp32.

On a shared machine, where another process keeps a core busy, PyTorch's
OpenMP threads spin at every barrier waiting for the descheduled one: a
training step of the seed network took 178 ms with 2 threads instead of 53
ms on an idle machine.  Measured remedies, chosen by whoever starts the
process (the thread count changes the numerics, so it is never adapted behind
the caller's back): ``CNNSEARCH_THREADS=1`` (or ``fit(threads=1)``), about
80-100 ms then; or ``OMP_WAIT_POLICY=PASSIVE`` in the environment, 100 ms
when contended but 80 ms instead of 53 ms when idle.
"""

from trainer.augment import augment
from trainer.data import (
    DataError,
    Info,
    Split,
    Splits,
    dataset_info,
    load_splits,
    load_test,
    load_train,
    resolve_dataset,
    split,
)
from trainer.loop import METRICS, PRECISIONS, Evaluation, FitResult, evaluate, fit, resolve_device, resolve_precision

__all__ = [
    "augment", "DataError", "Info", "Split", "Splits", "dataset_info", "load_splits", "load_test", "load_train",
    "resolve_dataset", "split",
    "METRICS", "PRECISIONS", "Evaluation", "FitResult", "evaluate", "fit", "resolve_device", "resolve_precision",
]
