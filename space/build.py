"""``build(spec) -> nn.Module``: a pure, deterministic function of the spec.

Each layer's module comes from its kind (:mod:`space.layers`).  torch is imported
when a network is built, not when this module is: ``import space`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from space.layers import Shape, sequential

if TYPE_CHECKING:
    from space.modules import Net, ResidualBlock
    from space.spec import NetSpec

__all__ = ["build", "init_weights", "Net", "ResidualBlock"]


def build(spec: NetSpec) -> Net:
    """The spec's network, initialised as ``spec.recipe.init`` says (seed it with ``torch.manual_seed``).

    ``default``: PyTorch's own initialisation of each layer.  ``kaiming``: then, layer by layer in order,
    ``nn.init.kaiming_normal_(weight, nonlinearity="relu")`` (fan_in) on every convolution and linear
    weight; ``xavier``: ``nn.init.xavier_uniform_(weight)``; their biases zero.  Batch-norm layers keep
    torch's (weight 1, bias 0).
    """
    from space.modules import Net

    net = Net(sequential(spec.layers, Shape.of(spec.input)), spec.classes)
    if spec.recipe.init != "default":
        init_weights(net, spec.recipe.init)
    return net


def init_weights(module: Any, scheme: str) -> None:
    """Re-initialise every Conv2d / Linear of ``module`` in place (modules() order): ``kaiming`` or ``xavier``."""
    import torch
    from torch import nn

    with torch.no_grad():
        for m in module.modules():
            if not isinstance(m, nn.Conv2d | nn.Linear):
                continue
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                raise ValueError(f"init must be one of default, kaiming, xavier; got {scheme!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def __getattr__(name: str) -> Any:  # Net and ResidualBlock, still importable from here, without torch up front
    if name in ("Net", "ResidualBlock"):
        from space import modules

        return getattr(modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
