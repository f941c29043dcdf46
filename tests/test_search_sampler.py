"""The search's sampler: TPE, with one trial in three drawn at random, so that one early lucky choice
does not take the whole search."""

import collections

import optuna
import pytest

from search.sampler import RANDOM_EVERY, Explore, make_sampler

CHOICES = list("abcdef")


def _study(sampler, n=72):
    """A study whose objective rewards one choice of six: TPE soon samples it almost only."""
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        c = trial.suggest_categorical("c", CHOICES)
        return (1.0 if c == "b" else 0.5) + 0.1 * trial.suggest_float("x", 0.0, 1.0)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(objective, n_trials=n)
    return study


def test_every_third_trial_is_drawn_at_random_and_the_others_by_tpe():
    sampler = make_sampler("tpe", 0)
    assert isinstance(sampler, Explore)
    study = _study(sampler)
    rand = [t.params["c"] for t in study.trials if sampler.is_random(t.number)]
    tpe = [t.params["c"] for t in study.trials[8:] if not sampler.is_random(t.number)]  # after TPE's 8 at random
    assert [t.number for t in study.trials if sampler.is_random(t.number)] == list(range(2, 72, RANDOM_EVERY))
    # TPE's trials go to the rewarded choice; the random ones spread over all six
    assert collections.Counter(tpe).most_common(1)[0][0] == "b"
    assert collections.Counter(tpe)["b"] > len(tpe) / 3
    assert len(set(rand)) == len(CHOICES)
    assert collections.Counter(rand)["b"] < len(rand) / 3


def test_the_same_seed_samples_the_same_trials_and_another_seed_other_ones():
    a, b, c = (_study(make_sampler("tpe", s), n=24) for s in (0, 0, 1))
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


def test_random_is_optunas_random_sampler_and_other_names_are_refused():
    assert isinstance(make_sampler("random", 0), optuna.samplers.RandomSampler)
    with pytest.raises(ValueError, match="tpe or random"):
        make_sampler("cmaes", 0)
    with pytest.raises(ValueError, match="every must be >= 2"):
        Explore(optuna.samplers.TPESampler(), every=1)


def test_a_search_study_samples_through_it(tmp_path):
    from search.run import build_parser
    from search.setup import make_study
    from search.storage import get_storage

    args = build_parser().parse_args(["--budget", "5000", "--seed", "3"])
    study = make_study(args, get_storage(str(tmp_path / "j.log")), "budget-5000", 5000, create=True)
    assert isinstance(study.sampler, Explore)
