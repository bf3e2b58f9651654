"""All networks; importing this module fills the registry."""

from metasrgan.models.discriminator import Discriminator
from metasrgan.models.edsr import EDSR
from metasrgan.models.meta_srgan import MetaSRGAN, bicubic_resize
from metasrgan.models.meta_upscale import MetaUpscale
from metasrgan.models.srgan import SRGAN
from metasrgan.models.vgg import VGG19Features

__all__ = [
    "EDSR",
    "SRGAN",
    "Discriminator",
    "MetaSRGAN",
    "MetaUpscale",
    "VGG19Features",
    "bicubic_resize",
]
