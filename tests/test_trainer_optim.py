"""trainer.optim: the graph-capturable updates are torch.optim's SGD, Adam and AdamW, state and all."""

from __future__ import annotations

import pytest
import torch

from space.spec import Recipe
from trainer.loop import _optimizer
from trainer.optim import init_state, update

RECIPES = {
    "sgd": Recipe(optimizer="sgd", lr=0.05, weight_decay=1e-4),
    "sgd-nesterov": Recipe(optimizer="sgd", lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-3),
    "sgd-plain": Recipe(optimizer="sgd", lr=0.05, momentum=0.0),
    "adam": Recipe(optimizer="adam", lr=3e-3),
    "adam-wd": Recipe(optimizer="adam", lr=1e-3, weight_decay=1e-2),
    "adamw": Recipe(optimizer="adamw", lr=1e-3, weight_decay=1e-2),
}


def _pair(recipe: Recipe, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.randn(6, 3, 3, 3, generator=g).requires_grad_(), torch.randn(6, generator=g).requires_grad_()]
    qs = [p.detach().clone().requires_grad_() for p in ps]
    return ps, _optimizer(ps, recipe), qs, _optimizer(qs, recipe)


@pytest.mark.parametrize("name", list(RECIPES))
def test_update_follows_torch_optim_step_for_step(name):
    r = RECIPES[name]
    ps, ref, qs, ours = _pair(r)
    init_state(ours)
    g = torch.Generator().manual_seed(1)
    for step in range(8):
        grads = [torch.randn(p.shape, generator=g) for p in ps]
        lr = r.lr * (1 + step) / 8  # a changing rate, as a scheduler gives
        ref.param_groups[0]["lr"] = lr
        for p, gr in zip(ps, grads, strict=True):
            p.grad = gr.clone()
        ref.step()
        update(ours, [gr.clone() for gr in grads], torch.tensor(lr))
        for p, q in zip(ps, qs, strict=True):
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    assert max((p - q).abs().max().item() for p, q in zip(ps, qs, strict=True)) < 1e-5
    moved = max((p - p0).abs().max().item() for p, p0 in zip(ps, _pair(r)[0], strict=True))
    assert moved > 1e-3  # the parameters really moved


@pytest.mark.parametrize("name", ["sgd-nesterov", "adamw"])
def test_the_state_is_torch_optims_own_and_survives_a_state_dict_round_trip(name):
    r = RECIPES[name]
    ps, ref, qs, ours = _pair(r)
    init_state(ours)
    g = torch.Generator().manual_seed(2)
    grads = [[torch.randn(p.shape, generator=g) for p in ps] for _ in range(6)]
    for k, gs in enumerate(grads):
        for p, gr in zip(ps, gs, strict=True):
            p.grad = gr.clone()
        ref.step()
        if k < 3:  # ours for three steps, then torch.optim goes on from our state
            update(ours, [gr.clone() for gr in gs], torch.tensor(r.lr))
        else:
            if k == 3:
                fresh = _optimizer(qs, r)
                fresh.load_state_dict(ours.state_dict())
            for q, gr in zip(qs, gs, strict=True):
                q.grad = gr.clone()
            fresh.step()
    assert set(ours.state[qs[0]]) == set(ref.state[ps[0]])
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_init_state_keeps_what_is_there_and_update_reads_nothing_back():
    r = RECIPES["sgd"]
    ps, ref, qs, ours = _pair(r)
    init_state(ours)
    buf = ours.state[qs[0]]["momentum_buffer"]
    assert torch.count_nonzero(buf) == 0
    update(ours, [torch.ones_like(q) for q in qs], torch.tensor(0.1))
    init_state(ours)
    assert ours.state[qs[0]]["momentum_buffer"] is buf and torch.count_nonzero(buf) == buf.numel()
    with pytest.raises(ValueError, match="one parameter group"):
        init_state(torch.optim.SGD([{"params": qs[:1]}, {"params": qs[1:]}], lr=0.1))


@pytest.mark.parametrize("make, says", [
    (lambda ps: torch.optim.RMSprop(ps, lr=0.01), "implements SGD, Adam and AdamW, not RMSprop"),
    (lambda ps: torch.optim.Adagrad(ps, lr=0.01), "not Adagrad"),
    (lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, dampening=0.1), "no dampening=0.1"),
    (lambda ps: torch.optim.Adam(ps, lr=0.01, amsgrad=True), "no amsgrad=True"),
    (lambda ps: torch.optim.AdamW(ps, lr=0.01, maximize=True), "no maximize=True"),
], ids=["rmsprop", "adagrad", "sgd-dampening", "adam-amsgrad", "adamw-maximize"])
def test_an_optimizer_trainer_optim_does_not_implement_is_refused_before_any_step(make, says):
    from trainer.step import Epoch

    ps = [torch.randn(4, 3, requires_grad=True)]
    before = ps[0].detach().clone()
    opt = make(ps)
    state = {k: dict(v) for k, v in opt.state.items()}  # Adagrad makes its state at construction
    with pytest.raises(ValueError, match=says):
        init_state(opt)
    with pytest.raises(ValueError, match=says):  # where fit makes its epoch: never run as plain SGD
        Epoch(torch.nn.Identity(), torch.nn.Identity(), opt, None, Recipe(), torch.Generator(),
              channels_last=False, precision="fp32", progress=None, capture=False)
    assert {k: set(v) for k, v in opt.state.items()} == {k: set(v) for k, v in state.items()}  # nothing added
    assert torch.equal(ps[0], before)


def test_adam_told_to_decouple_its_weight_decay_is_stepped_as_adamw():
    ps = [torch.randn(6, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()]
    qs = [ps[0].detach().clone().requires_grad_()]
    ref = torch.optim.Adam(ps, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
    ours = torch.optim.Adam(qs, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
    init_state(ours)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        grad = torch.randn(6, 3, generator=g)
        ps[0].grad = grad.clone()
        ref.step()
        update(ours, [grad.clone()], torch.tensor(1e-2))
    torch.testing.assert_close(qs[0], ps[0], rtol=1e-5, atol=1e-6)
