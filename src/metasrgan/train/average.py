"""An exponential moving average of the generator's weights (``optim.ema``).

Validation at one step sees one point of a noisy trajectory; an average over the last
~``1 / (1 - decay)`` updates is smoother and, on this project's runs, better: averaging two
checkpoints 2,000 steps apart raised the validation gain over the best of them (see
``CHANGELOG.md``).  torch's :class:`~torch.optim.swa_utils.AveragedModel` does the update;
this module adds what the trainer needs around it: the average's tensors in the resumable
state (``ema.*``) and their checks on restore.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from metasrgan.checkpoint import check_tensor_shapes

PREFIX = "ema"


class WeightAverage:
    """``decay``-weighted running average of ``model``'s parameters (its buffers are copied:
    the generator's are constants); :attr:`model` is the averaged network."""

    def __init__(self, model: nn.Module, decay: float):
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.averaged.requires_grad_(False)

    @property
    def model(self) -> nn.Module:
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        """One update after an optimizer step (the first copies ``model``'s weights)."""
        self.averaged.update_parameters(model)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {
            f"{PREFIX}.{k}": v.detach().cpu().contiguous()
            for k, v in self.averaged.state_dict().items()
        }

    def restore(self, tensors: dict[str, torch.Tensor], where: str) -> bool:
        """Load the average from a state's ``ema.*`` tensors; ``False`` (nothing changed) if
        the state has none (a run started without ``optim.ema``)."""
        n = len(PREFIX) + 1
        saved = {k[n:]: v for k, v in tensors.items() if k.startswith(PREFIX + ".")}
        if not saved:
            return False

        def shapes(state: dict) -> dict[str, tuple]:
            return {f"{PREFIX}.{k}": tuple(v.shape) for k, v in state.items()}

        check_tensor_shapes(where, shapes(self.averaged.state_dict()), shapes(saved))
        self.averaged.load_state_dict(saved)
        return True
