"""How a search samples its trials: Optuna's TPE, with one trial in ``RANDOM_EVERY`` drawn at random.

TPE alone settles within its first trials on one optimizer, scheduler and batch size: in five
hour-long CPU searches under 5,000 parameters one such combination, first sampled between trial 0 and
13, took 78-96% of rung 0's trials and every trial of the last rung (bench/README.md, "One trial in
three at random"), so a search seed's first lucky draw decided its recipe family for good.  BOHB
(Falkner et al., 2018) keeps a share of its configurations uniformly random for this reason;
:class:`Explore` does the same on top of TPE.  The random trials are chosen by trial number, so every
worker of a study agrees on them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

__all__ = ["RANDOM_EVERY", "Explore", "make_sampler"]

RANDOM_EVERY = 3  # trial numbers n with n % RANDOM_EVERY == RANDOM_EVERY - 1 are sampled at random


class Explore(BaseSampler):
    """``inner`` for most trials; ``RandomSampler`` for trial numbers ``every - 1``, ``2 * every - 1``, ..."""

    def __init__(self, inner: BaseSampler, *, every: int = RANDOM_EVERY, seed: int | None = None) -> None:
        if every < 2:
            raise ValueError(f"every must be >= 2, got {every}")
        self._inner, self._every = inner, every
        self._random = RandomSampler(seed=None if seed is None else seed + 1)

    def is_random(self, number: int) -> bool:
        return number % self._every == self._every - 1

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        return self._random if self.is_random(trial.number) else self._inner

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(study, trial)
        self._random.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._inner.after_trial(study, trial, state, values)
        self._random.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
        self._random.reseed_rng()


def make_sampler(name: str, seed: int | None) -> BaseSampler:
    """``tpe``: multivariate TPE (with the constant liar, for parallel workers) under :class:`Explore`;
    ``random``: Optuna's RandomSampler."""
    if name == "random":
        return RandomSampler(seed=seed)
    if name != "tpe":
        raise ValueError(f"sampler must be tpe or random, got {name!r}")
    with warnings.catch_warnings():  # multivariate/group/constant_liar are "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        tpe = TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8, constant_liar=True)
    return Explore(tpe, seed=seed)
