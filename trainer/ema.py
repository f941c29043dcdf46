"""Weight averaging: an exponential moving average (EMA) of a model's weights and BatchNorm statistics.

``recipe.ema`` is the decay per training step (0: off).  After every step the
average moves towards the weights just updated::

    d = min(ema, (1 + t) / (10 + t))      # t: steps so far; the warm-up TensorFlow's
    avg = d * avg + (1 - d) * weights     # ExponentialMovingAverage(num_updates) does

so that the first epochs are not an average over the random start.  BatchNorm's
running statistics are averaged the same way (``AveragedModel(use_buffers=True)``
in torch, ``ModelEmaV3`` in timm); integer buffers (the batch counts) are copied.
The update is tensor arithmetic with no host sync, so it is part of the step a
CUDA graph captures.  Validation evaluates the average, and :func:`trainer.loop.fit`
leaves the model holding it.

torch's ``AveragedModel.update_parameters`` reads its update count back to the host
every step (a sync that graph capture refuses), hence this class.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["Ema"]


class Ema:
    """The moving average of ``model`` with ``decay`` per step; ``module`` is a copy of the model holding it.

    The tensors of both are paired once, here, so make it once the model is on its device: :meth:`update`
    then reads the model's own tensors, which training and ``load_state_dict`` change in place.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        for p in self.module.parameters():
            p.grad = None
        avg = [*self.module.parameters(), *self.module.buffers()]
        pairs = list(zip(avg, [*model.parameters(), *model.buffers()], strict=True))
        self._avg_f = [a for a, _ in pairs if a.is_floating_point()]
        self._cur_f = [c for a, c in pairs if a.is_floating_point()]
        self._others = [(a, c) for a, c in pairs if not a.is_floating_point()]  # the batch counts: copied
        device = avg[0].device if avg else torch.device("cpu")
        self.t = torch.zeros((), device=device)  # steps averaged so far (float32: it feeds the decay)

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the model's weights and buffers (no host sync)."""
        self.t += 1
        d = torch.clamp((1 + self.t) / (10 + self.t), max=self.decay)  # 0-d, on the device
        torch._foreach_mul_(self._avg_f, d)
        torch._foreach_add_(self._avg_f, torch._foreach_mul(self._cur_f, 1 - d))
        for a, c in self._others:
            a.copy_(c)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the average consists of (what a CUDA-graph warm-up saves and puts back)."""
        return [*self.module.parameters(), *self.module.buffers(), self.t]

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "t": self.t.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.t.copy_(state["t"])
