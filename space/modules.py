"""The torch modules a built network is made of, beyond ``torch.nn``'s own."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Net", "ResidualBlock"]


class ResidualBlock(nn.Module):
    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Net(nn.Module):
    """The built network: ``(B, C, H, W) -> (B, classes)`` logits."""

    def __init__(self, layers: nn.Sequential, classes: int) -> None:
        super().__init__()
        self.layers = layers
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(x.shape[0], self.classes)  # (B, classes)
