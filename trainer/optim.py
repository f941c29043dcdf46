"""The optimizers' updates as tensor arithmetic with a device-tensor learning rate: what a CUDA graph can capture.

torch.optim's SGD reads a tensor learning rate back to the host (a sync that
graph capture refuses) and creates its momentum buffers on the first step.
:func:`update` does the updates of ``torch.optim.SGD``, ``Adam`` and ``AdamW``
as :func:`trainer.loop._optimizer` configures them (one parameter group, no
dampening, no amsgrad, not maximising) with ``torch._foreach_*`` kernels and
no host sync.  Its state is the torch optimizer's own ``state`` (same keys,
same meaning), so checkpoints and learning-rate schedulers see one optimizer
whichever path stepped it.  Any other optimizer, or option, is refused by
:func:`check_supported` (called by :func:`init_state` and when a training
epoch is made), never run as something else.
"""

from __future__ import annotations

import torch

__all__ = ["check_supported", "init_state", "update"]

_KINDS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
# options whose other values change the update; each must have its default
_DEFAULTS = {"dampening": 0, "amsgrad": False, "maximize": False, "differentiable": False}


def _params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    if len(opt.param_groups) != 1:
        raise ValueError(f"one parameter group expected, got {len(opt.param_groups)}")
    return list(opt.param_groups[0]["params"])


def check_supported(opt: torch.optim.Optimizer) -> None:
    """A ValueError unless :func:`update` does ``opt``'s own update: SGD, Adam or AdamW, one parameter group,
    and none of dampening, amsgrad, maximize, differentiable."""
    if type(opt) not in _KINDS:
        raise ValueError(f"trainer.optim implements SGD, Adam and AdamW, not {type(opt).__name__}: "
                         "add its update there before training with it")
    _params(opt)  # one parameter group
    group = opt.param_groups[0]
    for key, default in _DEFAULTS.items():
        if key in group and group[key] != default:
            raise ValueError(f"trainer.optim's {type(opt).__name__} has no {key}={group[key]!r} "
                             f"(only {key}={default!r})")


def _decoupled(opt: torch.optim.Optimizer) -> bool:
    """Whether the weight decay is AdamW's, decoupled from the gradient (torch's Adam can be told so too)."""
    return bool(opt.param_groups[0].get("decoupled_weight_decay", isinstance(opt, torch.optim.AdamW)))


def init_state(opt: torch.optim.Optimizer) -> None:
    """Create the state :func:`update` works on, where the optimizer has none yet (zeros: the same first step).

    SGD with momentum: ``momentum_buffer``; Adam(W): ``step`` (a float32 scalar,
    moved to the parameter's device), ``exp_avg`` and ``exp_avg_sq``.  An optimizer :func:`update`
    does not implement is a ValueError (:func:`check_supported`).
    """
    check_supported(opt)
    adam = isinstance(opt, torch.optim.Adam | torch.optim.AdamW)
    for p in _params(opt):
        st = opt.state[p]
        if adam:
            step = st.get("step")
            st["step"] = p.new_zeros((), dtype=torch.float32) if step is None else step.to(p.device, torch.float32)
            for key in ("exp_avg", "exp_avg_sq"):
                if st.get(key) is None:
                    st[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif opt.param_groups[0]["momentum"] and st.get("momentum_buffer") is None:
            st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


@torch.no_grad()
def update(opt: torch.optim.Optimizer, grads: list[torch.Tensor], lr: torch.Tensor) -> None:
    """One step of ``opt`` on its parameters with ``grads`` (in parameter order) at learning rate ``lr`` (0-d tensor).

    Call :func:`init_state` once first.  Nothing is read back to the host.
    """
    group = opt.param_groups[0]
    params = _params(opt)
    wd = group["weight_decay"]
    state = [opt.state[p] for p in params]
    if isinstance(opt, torch.optim.Adam | torch.optim.AdamW):
        beta1, beta2 = group["betas"]
        if wd and _decoupled(opt):
            torch._foreach_mul_(params, 1 - lr * wd)
        elif wd:
            grads = list(torch._foreach_add(grads, params, alpha=wd))
        steps = [s["step"] for s in state]
        m = [s["exp_avg"] for s in state]
        v = [s["exp_avg_sq"] for s in state]
        torch._foreach_add_(steps, 1)
        t = steps[0]  # every parameter has taken the same steps
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(v)
        # the bias corrections in float64, as torch.optim computes them (on the host): 1 - 0.999 in float32 is 5e-5 off
        torch._foreach_div_(denom, torch.sqrt(1 - torch.pow(beta2, t.double())).float())
        torch._foreach_add_(denom, group["eps"])
        step = torch._foreach_div(m, denom)
        torch._foreach_mul_(step, lr / (1 - torch.pow(beta1, t.double())).float())
        torch._foreach_sub_(params, step)
        return
    if wd:
        grads = list(torch._foreach_add(grads, params, alpha=wd))
    momentum = group["momentum"]
    if momentum:
        bufs = [s["momentum_buffer"] for s in state]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        grads = list(torch._foreach_add(grads, bufs, alpha=momentum)) if group["nesterov"] else bufs
    torch._foreach_sub_(params, torch._foreach_mul(grads, lr))
