"""Helpers for the trainer tests: a run interrupted from outside the trainer."""


class Stop(Exception):
    """Raised by :func:`stop_after`'s report."""


def stop_after(n):
    """A ``report`` callback that interrupts the run once epoch ``n`` is reported (raises :class:`Stop`)."""
    def report(epoch, metrics):
        if epoch == n:
            raise Stop
    return report
