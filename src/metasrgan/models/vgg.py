"""VGG19 feature extractor for the perceptual loss, defined here (no torchvision).

The layer layout matches torchvision's ``vgg19().features`` so that torchvision's published
ImageNet state dict (``vgg19-dcbb9e9d.pth``) loads by key.  The weights cannot be bundled;
:func:`load_vgg19_weights` finds them in a given path, ``$METASRGAN_VGG19``, or torch.hub's
cache, or downloads them through torch.hub when ``download=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from metasrgan.registry import register

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
# torchvision's configuration "E": numbers are conv widths, "M" a 2x2 max-pool.
VGG19_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19WeightsMissing(FileNotFoundError):
    pass


def _vgg19_layers() -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = 3
    for item in VGG19_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(prev, int(item), 3, padding=1), nn.ReLU(inplace=True)]
            prev = int(item)
    return layers


@register("vgg19-features")
class VGG19Features(nn.Module):
    """VGG19 ``features`` up to (not including) its last layer: conv5_4 after ReLU.

    Input: images in [0, 1] with 1 or 3 channels (gray is repeated to RGB), ImageNet-
    normalised inside.  Parameters are frozen.
    """

    def __init__(self, layers: int = 36):
        super().__init__()
        self.features = nn.Sequential(*_vgg19_layers()[:layers])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std)

    def load_pretrained(self, path: str | os.PathLike | None = None, download: bool = False):
        state = load_vgg19_weights(path, download=download)
        ours = self.state_dict()
        picked = {k: v for k, v in state.items() if k in ours}
        missing = set(ours) - set(picked)
        if missing:
            raise ValueError(f"VGG19 weights file lacks {sorted(missing)[:4]}...")
        self.load_state_dict(picked)
        return self


def vgg19_candidates(path: str | os.PathLike | None = None) -> list[Path]:
    found = []
    if path:
        found.append(Path(path))
    if os.environ.get("METASRGAN_VGG19"):
        found.append(Path(os.environ["METASRGAN_VGG19"]))
    found.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME)
    return found


def load_vgg19_weights(
    path: str | os.PathLike | None = None, download: bool = False
) -> dict[str, torch.Tensor]:
    """torchvision's VGG19 state dict (``.pth`` loaded with ``weights_only=True``, or
    ``.safetensors``).  Raises :class:`VGG19WeightsMissing` with the places looked in."""
    for candidate in vgg19_candidates(path):
        if candidate.is_file():
            return _read_state(candidate)
        if path and candidate == Path(path):
            raise VGG19WeightsMissing(f"VGG19 weights file not found: {candidate}")
    if download:
        state = torch.hub.load_state_dict_from_url(VGG19_URL, progress=True, weights_only=True)
        return {k: v for k, v in state.items() if k.startswith("features.")}
    looked = ", ".join(str(c) for c in vgg19_candidates(path))
    raise VGG19WeightsMissing(
        "the perceptual loss needs torchvision's ImageNet VGG19 weights "
        f"({VGG19_FILENAME}, from {VGG19_URL}); looked in: {looked}. "
        "Pass --vgg19 PATH, set METASRGAN_VGG19, allow the download, or train with "
        "loss.perceptual: 0 (see configs/)."
    )


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
