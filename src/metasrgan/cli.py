"""The ``metasrgan`` command.  Heavy imports live inside the commands so ``--help`` is instant.

Each subcommand is registered in :data:`COMMANDS` as ``name -> (module, help)``; the module
provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from metasrgan import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("metasrgan.commands.info", "list the models with their parameter counts"),
    "upscale": ("metasrgan.commands.upscale", "super-resolve an image, volume or folder"),
    "demo": ("metasrgan.commands.demo", "run the shipped model on the bundled sample"),
    "data": ("metasrgan.commands.data", "prepare datasets and compute statistics"),
    "train": ("metasrgan.commands.train", "train a model from a YAML config"),
    "evaluate": ("metasrgan.commands.evaluate", "PSNR/SSIM tables and figures over scales"),
    "report": ("metasrgan.commands.report", "gather a run's tables and figures in one page"),
    "serve": ("metasrgan.commands.serve", "browser viewer with real-time zoom"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metasrgan",
        description="Arbitrary-scale super-resolution of brain MRI (Meta-SRGAN).",
    )
    parser.add_argument("--version", action="version", version=f"metasrgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
        # real arguments are added lazily in main() for the chosen command only
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = COMMANDS
    if not argv or argv[0] not in commands:
        parser = build_parser()
        args = parser.parse_args(argv)  # prints help / errors for unknown commands
        parser.print_help()
        return 0 if args.command is None and not argv else 2
    name = argv[0]
    module_name, help_text = commands[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"metasrgan {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"metasrgan {name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
