"""Sampling under a budget: hard cap, filled budgets, replay, and the search-space file."""

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from space_helpers import flat_layers

from search.sample import OverBudget, sample, smallest_params
from search.searchspace import DEFAULT_SPACE, SearchSpace, load_space, space_from_dict
from space.analysis import count_params
from space.build import build
from space.spec import SpecError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sampled(budget, n, seed=0, space=None):
    space = space or space_from_dict()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        try:
            out.append((trial, sample(trial, space, budget, epochs=10)))
        except (OverBudget, SpecError):
            out.append((trial, None))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("budget", [5_000, 20_000, 100_000])
def test_500_sampled_specs_are_within_budget_and_almost_all_trainable(budget):
    got = _sampled(budget, 500)
    specs = [s for _, s in got if s is not None]
    assert len(specs) >= 0.95 * 500
    counts = [count_params(s) for s in specs]
    assert max(counts) <= budget
    # the budget is filled, not wasted: the sampled fill is 0.7..1.0 of it
    assert sum(counts) / len(counts) >= 0.6 * budget


def test_widen_fills_what_the_base_width_leaves_never_past_the_target():
    budget = 5_000
    plain = _sampled(budget, 200, seed=5)
    wide = _sampled(budget, 200, seed=5, space=space_from_dict({"widen": True}))
    share = {"plain": [], "wide": []}
    for (tp, sp), (tw, sw) in zip(plain, wide, strict=True):
        assert tp.params == tw.params  # a fixed widen samples nothing: the same trials
        if sp is None:
            assert sw is None
            continue
        target = int(tp.params["arch.fill"] * budget)
        assert count_params(sp) <= count_params(sw) <= target
        share["plain"].append(count_params(sp) / target)
        share["wide"].append(count_params(sw) / target)
    mean = {k: sum(v) / len(v) for k, v in share.items()}
    assert mean["plain"] < 0.93 and mean["wide"] > 0.97 and min(share["wide"]) > 0.9, mean


_OPENED = [{}, {"widen": {"choices": [False, True]}}, {"open_type": {"choices": ["plain", "sep"]}},
           {"conv_bias": {"choices": [False, True]}, "bn_order": {"choices": ["bn_act", "act_bn"]}}]


@pytest.mark.parametrize("entries", _OPENED)
def test_sampled_network_builds_with_the_counted_parameters(entries):
    for _, spec in _sampled(20_000, 20, seed=3, space=space_from_dict(entries)):
        assert sum(p.numel() for p in build(spec).parameters()) == count_params(spec)


@pytest.mark.parametrize("entries", _OPENED)
def test_fixed_trial_replay_gives_the_same_spec(entries):
    space = space_from_dict(entries)
    for trial, spec in _sampled(20_000, 30, seed=1, space=space):
        frozen = optuna.trial.FixedTrial(trial.params)
        assert sample(frozen, space, 20_000, epochs=10) == spec


def test_param_names_are_hierarchical():
    trial, _ = _sampled(20_000, 1)[0]
    names = set(trial.params)
    assert {"arch.stages", "s1.convs", "opt.name", "sched.name", "train.batch_size"} <= names
    assert all("." in n for n in names)


def test_smallest_params_and_impossible_budget():
    space = space_from_dict()
    smallest = smallest_params(space)
    assert 100 < smallest < 2_000
    study = optuna.create_study()
    with pytest.raises(OverBudget):
        sample(study.ask(), space, smallest - 1, epochs=1)


def _openings(spec):
    """The kind of the convolution that opens each stage after the first (the one after its squeeze, if any)."""
    kinds = [layer.kind for layer in spec.layers]
    out = []
    for i in (i for i, k in enumerate(kinds) if k == "maxpool"):
        convs = [j for j in range(i + 1, len(kinds)) if kinds[j] in ("conv", "sepconv")]
        squeezed = spec.layers[convs[0]].kind == "conv" and spec.layers[convs[0]].k == 1
        out.append(kinds[convs[1] if squeezed else convs[0]])
    return out


def test_stages_after_the_first_open_with_a_separable_convolution_when_sampled_so():
    default = [s for _, s in _sampled(5_000, 40, seed=4) if s is not None]
    assert default and all(set(_openings(s)) == {"conv"} for s in default)
    space = space_from_dict({"open_type": {"choices": ["plain", "sep"]}})
    got = [(t, s) for t, s in _sampled(5_000, 40, seed=4, space=space) if s is not None]
    for trial, spec in got:
        want = [{"plain": "conv", "sep": "sepconv"}[trial.params[f"s{i}.open"]]
                for i in range(2, trial.params["arch.stages"] + 1)]
        assert _openings(spec) == want and count_params(spec) <= 5_000
        assert spec.layers[0].kind == "conv"  # the first stage opens on the image with a plain convolution
    assert {k for _, s in got for k in _openings(s)} == {"conv", "sepconv"}
    # a separable opening costs fewer parameters, so the smallest network of the space is smaller
    assert smallest_params(space) < smallest_params(space_from_dict())


def test_space_override_fixes_values(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("stages: 2\nkernel: 3\noptimizer: adamw\nbatch_size: {choices: [128]}\n")
    space = load_space(f)
    for trial, spec in _sampled(20_000, 10, space=space):
        assert spec.recipe.optimizer == "adamw"
        assert sum(1 for layer in spec.layers if layer.kind == "maxpool") == 1
        assert "arch.stages" not in trial.params


def test_bn_order_puts_batch_norm_after_the_activation_when_chosen(tmp_path):
    def pairs(spec):  # what follows each convolution
        kinds = [layer.kind for layer in spec.layers]
        return {(kinds[i + 1], kinds[i + 2]) for i, k in enumerate(kinds[:-2]) if k in ("conv", "sepconv")
                and kinds[i + 1] != "gap"}

    default = [s for _, s in _sampled(20_000, 10, seed=2) if s is not None]
    assert default and all(pairs(s) == {("bn", "act")} for s in default)
    f = tmp_path / "space.yaml"
    f.write_text("bn_order: {choices: [bn_act, act_bn]}\nresidual: false\nhead: gap_linear\n")
    got = [(t, s) for t, s in _sampled(20_000, 20, seed=2, space=load_space(f)) if s is not None]
    orders = {t.params["arch.bn_order"] for t, _ in got}
    assert orders == {"bn_act", "act_bn"}
    for trial, spec in got:
        want = ("act", "bn") if trial.params["arch.bn_order"] == "act_bn" else ("bn", "act")
        assert pairs(spec) == {want}
        assert sum(p.numel() for p in build(spec).parameters()) == count_params(spec) <= 20_000


def _biased(spec):  # (bias, what follows) of each convolution of the network
    flat = list(flat_layers(spec.layers))
    return {(a.bias, b.kind) for a, b in zip(flat, flat[1:], strict=False) if a.kind in ("conv", "sepconv")}


def test_conv_bias_false_drops_the_bias_batch_norm_cancels_and_spends_it_on_width():
    budget = 5_000
    kept = _sampled(budget, 100, seed=4)
    dropped = _sampled(budget, 100, seed=4, space=space_from_dict({"conv_bias": False}))
    wider = 0
    for (tk, sk), (td, sd) in zip(kept, dropped, strict=True):
        assert tk.params == td.params  # a fixed entry samples nothing: the same trials
        if sk is None:
            continue
        assert _biased(sk) <= {(True, "bn"), (True, "gap")}
        # only the head's 1x1 conv (not followed by BatchNorm) keeps its bias
        assert _biased(sd) <= {(False, "bn"), (True, "gap")} and (False, "bn") in _biased(sd)
        target = int(td.params["arch.fill"] * budget)
        assert sum(p.numel() for p in build(sd).parameters()) == count_params(sd) <= target
        ck = [layer.out for layer in sk.layers if layer.kind in ("conv", "sepconv")]
        cd = [layer.out for layer in sd.layers if layer.kind in ("conv", "sepconv")]
        assert len(ck) == len(cd) and all(d >= k for d, k in zip(cd, ck, strict=True))  # never narrower
        wider += cd != ck
    assert wider >= 5  # the parameters freed buy channels where they reach the base width's next step


def test_conv_bias_stays_before_an_activation_that_batch_norm_follows():
    space = space_from_dict({"conv_bias": False, "bn_order": "act_bn", "head": "gap_linear"})
    specs = [s for _, s in _sampled(5_000, 20, seed=4, space=space) if s is not None]
    assert specs
    for spec in specs:
        assert all(x.bias for x in flat_layers(spec.layers) if x.kind in ("conv", "sepconv"))


def test_smallest_network_of_the_space_counts_without_bias_when_the_space_allows_it():
    assert smallest_params(space_from_dict({"conv_bias": False})) < smallest_params(space_from_dict())


@pytest.mark.parametrize("text, needle", [
    ("nope: 3\n", "unknown search-space entry 'nope'"),
    ("conv_bias: maybe\n", "conv_bias"),
    ("stages: {low: 3, high: 2}\n", "stages"),
    ("optimizer: {choices: [sgd, rmsprop]}\n", "optimizer"),
    ("lr: {low: 0, high: 0.1, log: true}\n", "lr"),
    ("batch_size: 12.5\n", "batch_size"),
    ("kernel: [3, 5]\n", "kernel"),
    ("stages: [\n", "malformed YAML"),
    ("- 1\n- 2\n", "mapping"),
])
def test_bad_space_file_is_one_spec_error(tmp_path, text, needle):
    f = tmp_path / "space.yaml"
    f.write_text(text)
    with pytest.raises(SpecError, match=None) as e:
        load_space(f)
    assert needle in str(e.value) and str(f) in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("min_channels: {low: 2, high: 8}\n", "min_channels: must be a fixed integer, got a range"),
    ("min_channels: {low: 2, high: 8, log: true}\n", "min_channels: must be a fixed integer, got a range"),
    ("min_channels: {choices: [4, 8]}\n", "min_channels: must be a fixed integer, got choices"),
    ("min_channels: [4, 8]\n", "min_channels: must be a fixed integer, got [4, 8]"),
    ("min_channels: 2.5\n", "min_channels: must be an integer, got 2.5"),
])
def test_min_channels_takes_a_fixed_value_only(tmp_path, text, message):
    f = tmp_path / "space.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as e:
        load_space(f)
    assert str(e.value) == f"{f}: {message}"


def test_a_fixed_min_channels_is_the_narrowest_sampled_convolution(tmp_path):
    def widths(layers):
        for layer in layers:
            if layer.kind == "residual":
                yield from widths(layer.layers)
            elif layer.kind in ("conv", "sepconv"):
                yield layer.out

    f = tmp_path / "space.yaml"
    f.write_text("min_channels: 12\nhead: gap_linear\n")
    space = load_space(f)
    assert space["min_channels"].value == 12
    specs = [s for _, s in _sampled(5_000, 20, seed=4, space=space) if s is not None]
    assert specs and min(min(widths(s.layers)) for s in specs) == 12
    default = [s for _, s in _sampled(5_000, 20, seed=4) if s is not None]
    assert min(min(widths(s.layers)) for s in default) < 12


def test_default_space_round_trips():
    assert space_from_dict(space_from_dict().to_dict()) == space_from_dict()
    assert set(space_from_dict().to_dict()) == set(DEFAULT_SPACE)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["sgd", "adam", "relu", "gap_conv", "choices", "low"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
_keys = st.one_of(st.sampled_from(sorted(DEFAULT_SPACE) + ["low", "high", "log", "choices"]), st.text(max_size=10))
_entries = st.one_of(_values, st.fixed_dictionaries({}, optional={"low": _scalars, "high": _scalars, "log": _scalars,
                                                                  "choices": st.lists(_scalars, max_size=4)}))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_values, st.dictionaries(_keys, _entries, max_size=6)))
def test_the_space_loader_raises_nothing_but_spec_error(data):
    try:
        space = space_from_dict(data)
    except SpecError:
        return
    assert isinstance(space, SearchSpace)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_the_space_file_reader_raises_nothing_but_spec_error(tmp_path_factory, text):
    f = tmp_path_factory.mktemp("space") / "space.yaml"
    f.write_text(text)
    try:
        load_space(f)
    except SpecError:
        pass


def test_a_space_file_can_search_the_new_schedulers_inits_and_crops(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("scheduler: {choices: [onecycle, multistep, plateau]}\n"
                 "init: {choices: [default, kaiming, xavier]}\n"
                 "anneal: {choices: [cos, linear]}\n"
                 "cycle_momentum: {choices: [false, true]}\n"
                 "three_phase: {choices: [false, true]}\n"
                 "div_factor: {low: 5, high: 50}\n"
                 "resized_crop: {low: 0.0, high: 0.5}\n"
                 "crop_scale_min: {low: 0.3, high: 0.9}\n"
                 "rotate_fill: {choices: [0.0, 255.0]}\n")
    space = load_space(f)
    got = [(t, s) for t, s in _sampled(20_000, 60, seed=2, space=space) if s is not None]
    assert len(got) >= 55
    recipes = [s.recipe for _, s in got]
    assert {r.scheduler for r in recipes} == {"onecycle", "multistep", "plateau"}
    assert {r.init for r in recipes} == {"default", "kaiming", "xavier"}
    for r in recipes:
        if r.scheduler == "multistep":
            assert r.milestones and all(1 <= m <= 10 for m in r.milestones)
        if r.scheduler == "onecycle":
            assert 5 <= r.div_factor <= 50
        assert 0.3 <= r.augment.crop_scale[0] <= 0.9 or not r.augment.resized_crop
    for trial, spec in got[:20]:
        assert sample(optuna.trial.FixedTrial(trial.params), space, 20_000, epochs=10) == spec


def test_the_weight_average_is_off_and_unsampled_by_default_and_searched_when_a_space_file_opens_it(tmp_path):
    for trial, spec in _sampled(5_000, 10):
        if spec is not None:
            assert spec.recipe.ema == 0.0 and "train.ema" not in trial.params
    f = tmp_path / "space.yaml"
    f.write_text("ema: {choices: [0.0, 0.99, 0.999]}\n")
    got = [(t, s) for t, s in _sampled(5_000, 30, seed=1, space=load_space(f)) if s is not None]
    assert {s.recipe.ema for _, s in got} == {0.0, 0.99, 0.999}
    assert all(t.params["train.ema"] == s.recipe.ema for t, s in got)
    with pytest.raises(SpecError, match="ema"):
        space_from_dict({"ema": 1.0})
