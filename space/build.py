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

__all__ = ["build", "Net", "ResidualBlock"]


def build(spec: NetSpec) -> Net:
    """The spec's network with PyTorch's default initialisation (seed it with ``torch.manual_seed``)."""
    from space.modules import Net

    return Net(sequential(spec.layers, Shape.of(spec.input)), spec.classes)


def __getattr__(name: str) -> Any:  # Net and ResidualBlock, still importable from here, without torch up front
    if name in ("Net", "ResidualBlock"):
        from space import modules

        return getattr(modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
