"""``metasrgan info``: each network with its parameter count (the paper's Table 1 row)."""

from __future__ import annotations

import argparse

PAPER_MODELS = [
    ("Meta-SRGAN", {"name": "meta-srgan"}, "0.561M", "any scale"),
    ("SRGAN", {"name": "srgan"}, "0.565M", "x2"),
    ("EDSR", {"name": "edsr"}, "40.7M", "x2"),
    ("Discriminator", {"name": "discriminator"}, "-", "-"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="also describe this model file (.safetensors)")


def run(args: argparse.Namespace) -> int:
    from metasrgan.registry import count_parameters, make

    print(f"{'model':<16}{'parameters':>14}{'paper':>10}  scales")
    for label, spec, paper, scales in PAPER_MODELS:
        n = count_parameters(make(spec))
        print(f"{label:<16}{n:>14,}{paper:>10}  {scales}")
    if args.model:
        from metasrgan.checkpoint import load_model

        model = load_model(args.model)
        meta = model.metadata
        print(f"\n{args.model}: {meta['model']['name']} {count_parameters(model):,} parameters")
        for key in ("trained", "recipe", "steps"):
            if key in meta:
                print(f"  {key}: {meta[key]}")
        acquisitions = tuple(getattr(model, "acquisitions", ()) or ())
        if acquisitions:  # models conditioned on how the input was made (--acquisition)
            default = getattr(model, "default_acquisition", None)
            print(f"  acquisitions: {', '.join(acquisitions)} (default {default})")
    return 0
