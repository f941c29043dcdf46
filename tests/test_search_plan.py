"""The fidelity plan is a pure function of (measured throughput, time budget): tested on numbers."""

import pytest

from search.plan import Plan, make_plan, plan_from_rows, trial_seconds

FULL = dict(train_images=55000, val_images=5000, epochs=15)


def _plan(rate, seconds, overhead=1.0, **kw):
    return make_plan(**(FULL | kw), train_rate=rate, eval_rate=3 * rate, seconds=seconds, overhead=overhead)


def _cost(p: Plan, rate, overhead=1.0):
    return sum(r.trials * trial_seconds(r.images, r.epochs, val=5000, train_rate=rate, eval_rate=3 * rate,
                                        overhead=overhead) for r in p.rungs)


@pytest.mark.parametrize("rate,seconds", [(1000, 3000), (1500, 3000), (3000, 3000), (150_000, 480), (500, 7200)])
def test_the_plan_fits_the_time_and_ends_at_the_full_fidelity(rate, seconds):
    p = _plan(rate, seconds)
    assert p.seconds == pytest.approx(_cost(p, rate))
    assert p.seconds <= 0.9 * seconds                       # the margin is kept
    assert p.seconds >= 0.75 * seconds                      # and the time is used
    top = p.rungs[-1]
    assert (top.images, top.epochs) == (55000, 15) and top.promote == 0 and not p.note
    for lo, hi in zip(p.rungs, p.rungs[1:], strict=False):
        assert lo.promote == hi.trials and hi.trials * 2 <= lo.trials     # the best half or less go on
        assert hi.images >= lo.images and hi.epochs >= lo.epochs and (hi.images, hi.epochs) != (lo.images, lo.epochs)
    assert p.rungs[0].trials >= 9


def test_a_faster_device_explores_more_in_the_same_time():
    slow, fast = _plan(1000, 3000), _plan(3000, 3000)
    assert fast.rungs[0].trials > slow.rungs[0].trials and fast.rungs[-1].trials >= slow.rungs[-1].trials


def test_the_cpu_hour_on_this_machine_class_has_four_rungs_with_a_cheap_start():
    p = _plan(1500, 2700)
    assert [(r.images, r.epochs) for r in p.rungs] == [(6900, 2), (13800, 4), (27500, 8), (55000, 15)]
    assert p.rungs[0].trials > 30 and p.rungs[-1].trials == 1


def test_a_short_time_lowers_the_last_rung_and_says_so():
    p = _plan(1500, 900)
    assert p.rungs[-1].images < 55000 and p.rungs[-1].epochs < 15
    assert "short" in p.note and p.seconds <= 0.9 * 900 and p.rungs[0].trials >= 9


def test_a_time_too_short_for_anything_still_gives_one_trial_and_says_so():
    p = _plan(10, 5)
    assert p.trials >= 1 and p.note


def test_deadlines_are_cumulative_and_the_last_is_the_budget():
    p = _plan(1500, 3000)
    d = p.deadlines()
    assert list(d) == sorted(d) and d[-1] == pytest.approx(3000)
    assert d[0] == pytest.approx(p.rungs[0].seconds * 3000 / p.seconds)


def test_the_plan_prints_as_a_table():
    lines = _plan(1500, 3000).lines()
    assert lines[0].startswith("plan: ") and "1,500 training images/s" in lines[0]
    assert lines[1].split() == ["rung", "trials", "train", "images", "epochs", "promoted", "expected"]
    assert lines[-1].split()[-2] == "export"


@pytest.mark.parametrize("bad", [dict(train_rate=0), dict(seconds=-1), dict(epochs=0)])
def test_bad_numbers_are_refused(bad):
    with pytest.raises(ValueError):
        make_plan(**(FULL | dict(train_rate=1000, eval_rate=3000, seconds=100) | bad))


def test_a_plan_given_as_rows():
    p = plan_from_rows([{"trials": 6, "images": 300, "epochs": 1}, {"trials": 2, "images": 600, "epochs": 2}])
    assert [(r.trials, r.images, r.epochs, r.promote) for r in p.rungs] == [(6, 300, 1, 2), (2, 600, 2, 0)]


@pytest.mark.parametrize("rows", [[], [{"trials": 2}], [{"trials": 2, "images": 10, "epochs": 1},
                                                         {"trials": 3, "images": 20, "epochs": 1}],
                                  [{"trials": 0, "images": 10, "epochs": 1}], "x"])
def test_bad_rows_are_refused(rows):
    with pytest.raises(ValueError, match="--plan"):
        plan_from_rows(rows)
