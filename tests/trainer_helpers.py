"""Helpers for the trainer tests: a tiny network that learns fast, and a run interrupted from outside the trainer."""

# a 9k-parameter network that learns within one short epoch, with dropout to exercise the global RNG
TINY = {
    "name": "tiny",
    "layers": [
        {"kind": "conv", "out": 8, "k": 3, "pad": 1}, {"kind": "bn"}, {"kind": "act"}, {"kind": "maxpool", "k": 2},
        {"kind": "dropout2d", "p": 0.1},
        {"kind": "conv", "out": 16, "k": 3, "pad": 1}, {"kind": "bn"}, {"kind": "act"}, {"kind": "maxpool", "k": 2},
        {"kind": "flatten"}, {"kind": "linear", "out": 10},
    ],
    "recipe": {"optimizer": "adam", "lr": 0.01, "batch_size": 64, "epochs": 1, "seed": 0,
               "augment": {"rotate": 10, "translate": 0.05, "crop_p": 0.1, "erase_p": 0.1}},
}


class Stop(Exception):
    """Raised by :func:`stop_after`'s report."""


def stop_after(n):
    """A ``report`` callback that interrupts the run once epoch ``n`` is reported (raises :class:`Stop`)."""
    def report(epoch, metrics):
        if epoch == n:
            raise Stop
    return report
