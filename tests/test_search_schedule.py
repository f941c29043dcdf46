"""The worker's next step, from the trials and the plan: ask, promote the best of a rung, drop, wait, done;
and the pruner that compares a trial only with its own rung."""

import datetime as dt

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search.plan import Rung
from search.progress import eta_seconds
from search.schedule import RungPruner, decide, promoted_attrs

PLAN = [Rung(6, 300, 1, 2, 6.0), Rung(2, 600, 2, 0, 8.0)]
OPEN = lambda r: False  # noqa: E731


def _t(number, rung=0, state=TrialState.COMPLETE, value=None, params=1000, start=None, **attrs):
    t = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                     user_attrs={"rung": rung, "params": params} | attrs,
                     intermediate_values={1: value} if value is not None else {})
    t.number = number
    if start is not None:
        t.datetime_start = start
    return t


def test_rung_0_asks_until_its_count_then_waits_for_running_trials():
    assert decide(PLAN, [], OPEN).kind == "ask"
    five = [_t(i, value=0.9) for i in range(5)]
    assert decide(PLAN, five, OPEN) == decide(PLAN, five, OPEN)
    assert decide(PLAN, five, OPEN).kind == "ask"
    running = five + [_t(5, state=TrialState.RUNNING)]
    assert decide(PLAN, running, OPEN).kind == "wait"


def test_the_top_of_a_rung_by_validation_is_promoted_ties_to_fewer_parameters():
    trials = [_t(0, value=0.90), _t(1, value=0.97, params=3000), _t(2, value=0.97, params=2000),
              _t(3, value=0.95), _t(4, state=TrialState.PRUNED, value=0.99), _t(5, state=TrialState.FAIL,
                                                                                fail_reason="nan: x")]
    d = decide(PLAN, trials, OPEN)
    assert d.kind == "promote" and d.rung == 1 and [t.number for t in d.trials] == [2, 1]
    a = promoted_attrs(d.trials[0], 1, PLAN[1])
    assert a == {"rung": 1, "train_limit": 600, "epochs": 2, "promoted_from": 2}


def test_promoted_trials_are_asked_for_then_the_study_is_done():
    trials = [_t(i, value=0.9 + i / 100) for i in range(6)]
    waiting = trials + [_t(6, rung=1, state=TrialState.WAITING, promoted_from=5),
                        _t(7, rung=1, state=TrialState.WAITING, promoted_from=4)]
    assert decide(PLAN, waiting, OPEN).kind == "ask"
    done = trials + [_t(6, rung=1, value=0.99, promoted_from=5), _t(7, rung=1, value=0.98, promoted_from=4)]
    assert decide(PLAN, done, OPEN).kind == "done"


def test_a_redone_trial_does_not_count_and_its_copy_is_asked_for():
    trials = [_t(i, value=0.9) for i in range(5)] + [_t(5, state=TrialState.FAIL, fail_reason="interrupted")]
    assert decide(PLAN, trials, OPEN).kind == "ask"


def test_a_rung_whose_time_is_up_drops_its_queue_waits_for_its_running_trials_and_promotes():
    trials = [_t(0, value=0.9), _t(1, value=0.8), _t(2, state=TrialState.RUNNING), _t(3, state=TrialState.WAITING)]
    closed = lambda r: r == 0  # noqa: E731
    d = decide(PLAN, trials, closed)
    assert d.kind == "drop" and [t.number for t in d.trials] == [3]
    trials[3] = _t(3, state=TrialState.FAIL, fail_reason="surplus: rung 0 closed")
    assert decide(PLAN, trials, closed).kind == "wait"
    trials[2] = _t(2, value=0.95)
    d = decide(PLAN, trials, closed)
    assert d.kind == "promote" and [t.number for t in d.trials] == [2, 0]


def test_a_rung_with_nothing_completed_ends_the_study():
    trials = [_t(i, state=TrialState.PRUNED, value=0.5) for i in range(6)]
    assert decide(PLAN, trials, OPEN).kind == "done"


def test_the_last_rung_never_closes():
    trials = [_t(i, value=0.9) for i in range(6)] + [_t(6, rung=1, state=TrialState.WAITING, promoted_from=5)]
    assert decide(PLAN, trials, lambda r: True).kind == "ask"


def test_the_last_rung_starts_no_queued_trial_that_its_time_left_cannot_finish():
    t0 = dt.datetime(2026, 1, 1)
    took_200s = _t(6, rung=1, value=0.99, promoted_from=5, start=t0)
    took_200s.datetime_complete = t0 + dt.timedelta(seconds=200)
    trials = [_t(i, value=0.9 + i / 100) for i in range(6)] + [took_200s]
    queued = trials + [_t(7, rung=1, state=TrialState.WAITING, promoted_from=4),
                       _t(8, rung=1, state=TrialState.WAITING, promoted_from=3)]
    closed = lambda r: r == 0  # noqa: E731
    assert decide(PLAN, queued, closed, fill=True, left=lambda r: 300.0).kind == "ask"
    d = decide(PLAN, queued, closed, fill=True, left=lambda r: 150.0)
    assert d.kind == "drop" and [t.number for t in d.trials] == [7, 8]
    assert decide(PLAN, queued, closed, fill=False, left=lambda r: 150.0).kind == "ask"   # a plan's counts rule
    dropped = trials + [_t(7, rung=1, state=TrialState.FAIL, promoted_from=4, fail_reason="surplus: rung 1 closed"),
                        _t(8, rung=1, state=TrialState.FAIL, promoted_from=3, fail_reason="surplus: rung 1 closed")]
    assert decide(PLAN, dropped, closed, fill=True, left=lambda r: 150.0).kind == "done"
    assert decide(PLAN, dropped, OPEN).kind == "done"          # resumed without its times: nothing sampled anew
    unfinished = trials[:6] + [_t(6, rung=1, state=TrialState.RUNNING, promoted_from=5)] + queued[7:]
    assert decide(PLAN, unfinished, closed, fill=True, left=lambda r: 1.0).kind == "ask"  # nothing measured yet


def test_the_pruner_compares_a_rung_0_trial_with_rung_0_only():
    study = optuna.create_study(direction="maximize", pruner=RungPruner(2, n_startup_trials=2))
    for v in (0.5, 0.6):  # rung 0: weak
        study.add_trial(create_trial(value=v, intermediate_values={1: v, 2: v}, user_attrs={"rung": 0}))
    for v in (0.97, 0.98):  # rung 1: strong
        study.add_trial(create_trial(value=v, intermediate_values={1: v, 2: v}, user_attrs={"rung": 1}))
    above = study.ask()
    above.set_user_attr("rung", 0)
    above.report(0.7, 1)
    assert not above.should_prune()     # above rung 0's median, though far below rung 1's
    below = study.ask()
    below.set_user_attr("rung", 0)
    below.report(0.52, 1)
    assert below.should_prune()         # below rung 0's median (0.55)


def test_a_promoted_rung_is_never_pruned():
    # With the median pruner in every rung the bare command's rung 1 stopped 18 of its 25 promoted trials
    # after one epoch of four, against the median of the first five (the best of rung 0), and its time
    # went unused: a promoted rung's count is fixed when it is promoted.
    study = optuna.create_study(direction="maximize", pruner=RungPruner(15, n_startup_trials=2))
    for r, epochs in ((1, 4), (2, 8), (3, 15)):
        for v in (0.98, 0.99, 0.99):
            study.add_trial(create_trial(value=v, intermediate_values={e: v for e in range(1, epochs + 1)},
                                         user_attrs={"rung": r, "epochs": epochs}))
        late = study.ask()
        for k, v in {"rung": r, "epochs": epochs}.items():
            late.set_user_attr(k, v)
        for e in range(1, epochs):
            late.report(0.5, e)         # far below its rung's median at every epoch
            assert not late.should_prune()


def test_the_pruner_takes_rung_0s_warm_up_from_the_trial_not_from_when_it_was_made():
    # A new study's pruner is made before its plan exists.  It once saw every trial as rung 0's with the
    # export's 15 epochs: with rung 0 at 2 epochs it then never pruned (warm-up 3 epochs), and with rung 0
    # at 4 epochs it pruned the last rung's trials at epoch 3 of 15 against rung 0's curves at 3 of 4.
    study = optuna.create_study(direction="maximize", pruner=RungPruner(15, n_startup_trials=2))
    for v in (0.97, 0.98, 0.98):  # rung 0, 4 epochs: near their end at epoch 3
        study.add_trial(create_trial(value=v, intermediate_values={e: v - 0.01 * (4 - e) for e in range(1, 5)},
                                     user_attrs={"rung": 0, "epochs": 4}))
    top = study.ask()
    for k, v in {"rung": 2, "epochs": 15, "train_limit": 0}.items():
        top.set_user_attr(k, v)
    for e in range(1, 6):
        top.report(0.90 + 0.01 * e, e)  # far below rung 0's values at each step, early in a longer schedule
        assert not top.should_prune()
    first = study.ask()                 # rung 0's own warm-up is a fifth of its 4 epochs: pruned from epoch 1
    for k, v in {"rung": 0, "epochs": 4}.items():
        first.set_user_attr(k, v)
    first.report(0.5, 1)
    assert first.should_prune()
    legacy = optuna.create_study(direction="maximize", pruner=RungPruner(10, n_startup_trials=2))
    for v in (0.97, 0.98):              # no plan (--trials/--epochs): every trial is rung 0's at the pruner's epochs
        legacy.add_trial(create_trial(value=v, intermediate_values={e: v for e in range(1, 11)}))
    t = legacy.ask()
    t.report(0.5, 1)
    assert not t.should_prune()         # warm-up: a fifth of 10 epochs
    t.report(0.5, 2)
    assert t.should_prune()


def test_the_eta_is_the_work_left_at_the_pace_of_this_run():
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    started = t0.timestamp()
    # rung 0: 6 trials x 1 epoch planned at 1 s each; 3 done in this run, in 30 s: ten times slower than planned
    trials = [_t(i, value=0.9, start=t0 + dt.timedelta(seconds=1)) for i in range(3)]
    eta = eta_seconds(PLAN, trials, started, started + 30)
    left = 3 * 1 + 2 * 2 * 2  # 3 rung-0 epochs + 2 rung-1 trials x 2 epochs x 2 s
    assert eta == pytest.approx(left * 10)
    assert eta_seconds(PLAN, [], started, started + 5) is None
    closed = eta_seconds(PLAN, trials, started, started + 30, closed=lambda r: r == 0)  # rung 0 takes no more
    assert closed == pytest.approx(2 * 2 * 2 * 10)
    promoted = trials + [_t(3, rung=1, state=TrialState.RUNNING, start=t0 + dt.timedelta(seconds=2))]
    assert eta_seconds(PLAN, promoted, started, started + 30) == pytest.approx(2 * 2 * 10)  # nor once promoted from


def test_a_lower_rung_closes_early_when_the_rungs_above_cannot_shrink_into_what_is_left():
    from search.schedule import reserve

    plan = [Rung(9, 1000, 2, 3, 9.0), Rung(3, 2000, 4, 1, 12.0), Rung(1, 4000, 8, 0, 12.0)]
    # rung 0's best three trained at 500 images/s (2 s an epoch on 1,000) and validated in 1 s an epoch:
    # one trial of rung 1 takes 4 x (2000/500 + 1) = 20 s (more than its 12 s share); one of rung 2
    # 8 x (4000/500 + 1) = 72 s, planned on 90%: 80 s
    worse = [_t(i, value=0.5 + i / 100, epoch_seconds=[9.0, 9.0], images_per_second=100.0) for i in range(3)]
    better = [_t(i + 3, value=0.9 + i / 100, epoch_seconds=[3.0, 3.0], images_per_second=500.0) for i in range(3)]
    trials = worse + better
    assert reserve(plan, 0, trials) == pytest.approx(100.0)                   # from the best three, not the others
    roomy = [plan[0], Rung(3, 2000, 4, 1, 60.0), Rung(1, 4000, 8, 0, 90.0)]
    assert reserve(roomy, 0, trials) == pytest.approx(60.0 + 90.0)           # shares longer than one trial
    assert reserve(plan, 0, []) is None and reserve(plan, 2, trials) is None
    assert reserve(plan, 0, worse[:2]) is None     # fewer finished than rung 1 takes: no estimate yet
    queued = trials + [_t(6, state=TrialState.WAITING)]
    assert decide(plan, queued, OPEN, fill=True, left=lambda r: 101.0).kind == "ask"
    d = decide(plan, queued, OPEN, fill=True, left=lambda r: 99.0)
    assert d.kind == "drop" and [t.number for t in d.trials] == [6]
    d = decide(plan, trials, OPEN, fill=True, left=lambda r: 99.0)            # its better half goes up
    assert d.kind == "promote" and d.rung == 1 and [t.number for t in d.trials] == [5, 4, 3]
    assert decide(plan, trials, OPEN, fill=False, left=lambda r: 99.0).kind == "ask"   # a plan's counts rule
    running = trials + [_t(6, state=TrialState.RUNNING)]
    assert decide(plan, running, OPEN, fill=True, left=lambda r: 99.0).kind == "wait"


# the plan of a 5,000 search: 2,815 training images/s measured, 60 minutes
PLAN_5000 = [Rung(131, 6900, 2, 32, 1038.0), Rung(32, 13800, 4, 9, 792.0), Rung(9, 27500, 8, 2, 786.0),
             Rung(2, 55000, 15, 0, 618.0)]


def test_networks_slower_than_planned_keep_rung_0_open_while_the_rungs_above_can_shrink_into_their_time():
    # 32 trials at 900 images/s, a third of the plan's speed: the rungs above at their planned counts would
    # need 4 x 32 x 15.3 + 8 x 9 x 30.6 + 15 x 2 x 61.1 / 0.9 = 6,200 s; they take fewer trials instead, and
    # need their shares (1,578 s) and one last-rung trial, 15 x 61.1 / 0.9 = 1,019 s in place of its 618
    slow = [_t(i, value=0.9, epoch_seconds=[6900 / 900] * 2, images_per_second=900.0) for i in range(32)]
    assert decide(PLAN_5000, slow, OPEN, fill=True, left=lambda r: 2700.0).kind == "ask"
    assert decide(PLAN_5000, slow, OPEN, fill=True, left=lambda r: 2500.0).kind == "promote"


def test_one_slow_first_trial_does_not_close_rung_0():
    # the first sampled network of a 5,000 search ran at 900 images/s: from it alone, a reserve for the
    # planned counts closed rung 0 after one trial
    slow = [_t(0, value=0.52, epoch_seconds=[8.0, 7.1], images_per_second=900.0)]
    assert decide(PLAN_5000, slow, OPEN, fill=True, left=lambda r: 100.0).kind == "ask"
    fast = [_t(i + 1, value=0.9, epoch_seconds=[2.0, 2.0], images_per_second=4000.0) for i in range(31)]
    assert decide(PLAN_5000, slow + fast, OPEN, fill=True, left=lambda r: 3500.0).kind == "ask"
    assert decide(PLAN_5000, slow + fast, OPEN, fill=True, left=lambda r: 100.0).kind == "promote"


def test_a_promoted_rung_keeps_as_many_as_the_time_left_can_train_at_their_measured_speed():
    from search.schedule import affordable

    plan = [Rung(9, 1000, 2, 3, 9.0), Rung(3, 2000, 4, 1, 12.0), Rung(1, 4000, 8, 0, 12.0)]
    # each source took 5 s an epoch on 1,000 images: at rung 1 a trial costs about 5 * 2 * 4 = 40 s
    src = [_t(i, value=0.9, epoch_seconds=[5.0, 5.0]) for i in range(3)]
    assert affordable(plan, 1, src, seconds_left=1000) == 3
    assert affordable(plan, 1, src, seconds_left=85) == 2
    assert affordable(plan, 1, src, seconds_left=85, jobs=2) == 3   # two workers train side by side
    assert affordable(plan, 1, src, seconds_left=10) == 1           # always at least one
    assert affordable(plan, 0, src, seconds_left=0) == 3            # rung 0 is the plan's own
    # the same 5 s epochs taken as rung 1's: a rung-2 trial costs 5 * 2 * 8 = 80 s; the last rung plans on
    # 90% of its time, a margin for that estimate (without it, 170 s would afford two)
    assert affordable(plan, 2, src, seconds_left=170) == 1 and affordable(plan, 2, src, seconds_left=180) == 2
    assert affordable(plan[:2], 1, src, seconds_left=85) == 1 and affordable(plan[:2], 1, src, seconds_left=90) == 2


def test_a_rung_promoted_from_is_closed_when_the_study_resumes():
    # the first run closed rung 0 at its time with 4 of its 6 trials and promoted; a resumed run (whose
    # clock knows nothing of that) does not go back to rung 0: its new trials could never be promoted
    trials = [_t(i, value=0.9 + i / 100) for i in range(4)] + [_t(4, state=TrialState.FAIL, fail_reason="surplus")]
    assert decide(PLAN, trials, OPEN).kind == "ask"
    promoted = trials + [_t(5, rung=1, value=0.99, promoted_from=3), _t(6, rung=1, state=TrialState.WAITING,
                                                                        promoted_from=2)]
    assert decide(PLAN, promoted, OPEN).kind == "ask" and decide(PLAN, promoted, OPEN).rung == 1
    promoted[-1] = _t(6, rung=1, value=0.98, promoted_from=2)
    assert decide(PLAN, promoted, OPEN).kind == "done"
    three = [Rung(6, 300, 1, 2, 6.0), Rung(2, 600, 2, 1, 8.0), Rung(1, 900, 3, 0, 9.0)]
    waiting = trials + [_t(5, rung=1, value=0.99, promoted_from=3), _t(6, rung=1, state=TrialState.WAITING,
                                                                       promoted_from=2), _t(7, rung=2, value=0.995)]
    d = decide(three, waiting, OPEN)
    assert d.kind == "drop" and d.rung == 1 and [t.number for t in d.trials] == [6]


def test_with_closing_times_rung_0_samples_until_its_time_is_up_and_offers_its_better_half():
    # the plan expected 6 rung-0 trials and 2 promoted (a third); the trials were cheaper than measured
    twelve = [_t(i, value=0.90 + i / 1000) for i in range(12)]
    d = decide(PLAN, twelve, OPEN)                                      # without fill: the plan's count
    assert d.kind == "promote" and [t.number for t in d.trials] == [11, 10]
    assert decide(PLAN, twelve, OPEN, fill=True).kind == "ask"          # with fill: rung 0 is open, it samples
    d = decide(PLAN, twelve, lambda r: r == 0, fill=True)               # its time is up: the better half offered
    assert d.kind == "promote" and [t.number for t in d.trials] == [11, 10, 9, 8, 7, 6]
    few = [_t(i, value=0.9) for i in range(3)]                          # slower than measured: closed at 3
    assert len(decide(PLAN, few, lambda r: r == 0, fill=True).trials) == 2   # at least the planned count
    seven = [_t(i, value=0.9) for i in range(7)]                        # half of 7, rounded up: 4
    assert len(decide(PLAN, seven, lambda r: r == 0, fill=True).trials) == 4
    # the last rung too: one planned, but the better half of rung 1 offered, for the time to trim
    two = [Rung(6, 300, 1, 4, 6.0), Rung(4, 600, 2, 1, 8.0), Rung(1, 900, 3, 0, 9.0)]
    up = [_t(i, value=0.9) for i in range(6)] + [_t(6 + i, rung=1, value=0.95 + i / 100, promoted_from=i)
                                                 for i in range(4)]
    d = decide(two, up, lambda r: r < 2, fill=True)
    assert d.kind == "promote" and d.rung == 2 and [t.number for t in d.trials] == [9, 8]
    assert [t.number for t in decide(two, up, OPEN).trials] == [9]      # without fill: the plan's one
    one = [Rung(3, 300, 1, 0, 3.0)]                                     # a single rung is the last: it never
    assert decide(one, [_t(i, value=0.9) for i in range(3)], OPEN, fill=True).kind == "done"  # fills


def test_while_the_rungs_fill_their_times_the_eta_is_at_least_the_time_to_the_end():
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    started = t0.timestamp()
    trials = [_t(i, value=0.9, start=t0 + dt.timedelta(seconds=1)) for i in range(3)]   # 3 epochs in 3 s: on plan
    assert eta_seconds(PLAN, trials, started, started + 3) == pytest.approx(3 + 8)
    assert eta_seconds(PLAN, trials, started, started + 3, end=started + 100) == pytest.approx(97)
    last = trials + [_t(3, rung=1, state=TrialState.RUNNING, start=t0 + dt.timedelta(seconds=2))]
    assert eta_seconds(PLAN, last, started, started + 3, end=started + 100) == pytest.approx(2 * 2 * 1)  # begun


def test_the_progress_bar_says_when_the_rungs_have_gone_past_the_planned_count():
    from search.progress import _bar

    assert _bar(12, 48) == "[#####...............]  12/48"
    assert _bar(50, 48) == "[####################]  50 of 48 planned"


def test_the_pareto_front_compares_trials_at_the_highest_fidelity_reached_only():
    from search.study import pareto_across, pareto_front

    low = dict(train_limit=6900, epochs=2)
    full = dict(train_limit=55000, epochs=15)
    trials = [_t(0, value=0.56, params=600, **low), _t(1, value=0.97, params=900, **low),
              _t(2, value=0.992, params=950, rung=3, **full), _t(3, value=0.994, params=990, rung=3, **full),
              _t(4, value=0.990, params=980, rung=3, **full), _t(5, state=TrialState.RUNNING, params=100, **full)]
    assert [t.number for t in pareto_front(trials)] == [2, 3]   # a 2-epoch trial is no point on the front
    legacy = [_t(0, value=0.9, params=500), _t(1, value=0.95, params=800), _t(2, value=0.93, params=900)]
    assert [t.number for t in pareto_front(legacy)] == [0, 1]   # one fidelity: every trial compares
    assert pareto_front([]) == []

    class S:
        def __init__(self, name, trials):
            self.study_name, self.trials = name, trials

        def get_trials(self, deepcopy=False):
            return self.trials

    small = [_t(0, value=0.991, params=450, rung=3, **full), _t(1, value=0.95, params=300, **low)]
    assert [(n, t.number) for n, t in pareto_across([S("b-1000", trials), S("b-500", small)])] == [
        ("b-500", 0), ("b-1000", 2), ("b-1000", 3)]


def test_a_worker_promotes_to_the_last_rung_as_many_of_the_better_half_as_its_time_affords(capsys):
    import time

    from search.worker import Work, _claim

    plan = [Rung(9, 1000, 2, 1, 9.0), Rung(1, 2000, 4, 0, 12.0)]   # the plan expected one trial at the top
    study = optuna.create_study(direction="maximize")
    for i in range(9):   # each took 5 s an epoch on 1,000 images: at rung 1 a trial costs about 5 * 2 * 4 = 40 s
        study.add_trial(create_trial(value=0.9 + i / 100, user_attrs={"rung": 0, "params": 1000,
                                                                     "epoch_seconds": [5.0, 5.0]}))
    now = time.time()
    for left, want in ((139.0, [8, 7, 6]), (1000.0, [8, 7, 6, 5, 4]), (10.0, [8])):
        s = optuna.create_study(direction="maximize")
        for t in study.trials:
            s.add_trial(t)
        work = Work(plan, closes=[now - 1, now + left])   # rung 0's time is up; rung 1 has `left` seconds
        assert _claim(s, work, rdb=False) is not None
        queued = s.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert [t.user_attrs["promoted_from"] for t in queued] == want   # the better half of 9 is 5
        said = capsys.readouterr().out.strip()
        assert said.startswith(f"rung 1: {len(want)} promoted, the best of 5 offered from rung 0")
        assert ("afford" in said) == (len(want) < 5)                     # and says when the time trimmed it
