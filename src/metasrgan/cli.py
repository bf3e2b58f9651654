"""The ``metasrgan`` command.  Heavy imports live inside the commands so ``--help`` is instant.

Each subcommand is registered in :data:`COMMANDS` as ``name -> (module, help)``; the module
provides ``add_arguments(parser)`` and ``run(args) -> int``.

Exit codes: 0 success; 1 a file failed (some inputs, or a file that could not be read or
written); 2 a usage error (bad options, a missing input, a request refused before any
work; argparse's errors too); 130 interrupted (Ctrl+C or SIGTERM alike: the signal is
named in the message).  While a
command runs, SIGINT and SIGTERM raise :class:`metasrgan.atomic.Interrupted` (a
KeyboardInterrupt), so every ``finally`` block runs and no temporary file is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator

from metasrgan import __version__, logs
from metasrgan.allocator import keep_freed_memory

COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("metasrgan.commands.info", "list the models with their parameter counts"),
    "upscale": ("metasrgan.commands.upscale", "super-resolve an image, volume or folder"),
    "demo": ("metasrgan.commands.demo", "run the shipped model on the bundled sample"),
    "data": ("metasrgan.commands.data", "prepare datasets and compute statistics"),
    "train": ("metasrgan.commands.train", "train a model from a YAML config"),
    "evaluate": ("metasrgan.commands.evaluate", "PSNR/SSIM tables and figures over scales"),
    "report": ("metasrgan.commands.report", "gather a run's tables and figures in one page"),
    "serve": ("metasrgan.commands.serve", "browser viewer with real-time zoom"),
    "bids": ("metasrgan.commands.bids", "BIDS App: a BIDS dataset in, BIDS derivatives out"),
}

EXAMPLES: dict[str, str] = {
    "info": "metasrgan info --model runs/x/checkpoints/best.safetensors",
    "upscale": "metasrgan upscale sub-01_T1w.nii.gz --scale 2.5 -o sub-01_x2.5.nii.gz\n"
    "  metasrgan upscale thick_1x1x5mm.nii.gz --spacing 1 -o iso_1mm.nii.gz --dtype int16",
    "demo": "metasrgan demo --output demo-output --scales 1.5,2,3.7",
    "data": "metasrgan data prepare /data/BraTS2021 slices/ --crop 128 128\n"
    "  metasrgan data stats /data/BraTS2021 --crop 128 128\n  metasrgan data fetch",
    "train": "metasrgan train --config configs/quick.yaml --set stages.0.steps=1000\n"
    "  metasrgan train --resume runs/quick",
    "evaluate": "metasrgan evaluate --models shipped --data samples --scales 1.1:4.0:0.1 -o eval/",
    "report": "metasrgan report eval/",
    "serve": "metasrgan serve --port 8000 --open",
}
"""One runnable example per command, shown by ``--help`` (the bids command has its own)."""


def _epilog(name: str) -> str:
    from metasrgan.scale import TRAINED_SCALES

    trained = (f"The shipped model was trained at scales {TRAINED_SCALES[0]}-"
               f"{TRAINED_SCALES[-1]} (step 0.1); other factors are extrapolations.")  # fmt: skip
    example = EXAMPLES.get(name)
    return (f"example:\n  {example}\n\n" if example else "") + trained


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


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[list[int]]:
    """Turn SIGINT and SIGTERM into :class:`~metasrgan.atomic.Interrupted` for the block;
    yields the list of signals received (a library that swallowed one must not exit 0)."""
    from metasrgan.atomic import raise_interrupted

    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        raise_interrupted(signum, frame)

    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        saved[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


INTERRUPTED = 130
"""Exit code of an interrupted command, by SIGINT or SIGTERM."""


def _is_usage_error(err: BaseException) -> bool:
    """``metasrgan.api``'s UsageError (matched by name: importing it here would load torch)."""
    return any(cls.__name__ == "UsageError" for cls in type(err).__mro__)


def main(argv: list[str] | None = None) -> int:
    with interrupts_as_exceptions() as received:
        try:
            code = _main(argv)
        except KeyboardInterrupt as err:
            signum = getattr(err, "signum", signal.SIGINT)
            name = signal.Signals(signum).name
            print(f"metasrgan: interrupted ({name}); nothing partial was left", file=sys.stderr)
            return INTERRUPTED
    if received:  # swallowed by some library on the way: still not a success
        print("metasrgan: interrupted", file=sys.stderr)
        return INTERRUPTED
    return code


def _main(argv: list[str] | None) -> int:
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
    parser = argparse.ArgumentParser(
        prog=f"metasrgan {name}", description=help_text, epilog=_epilog(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    module.add_arguments(parser)
    logs.add_arguments(parser)  # -v/-q on every command
    args = parser.parse_args(argv[1:])
    logs.setup(args)
    keep_freed_memory()  # page faults cost volumes 20-30% (metasrgan.allocator)
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError, KeyError) as err:
        from metasrgan.atomic import interrupt_in_chain

        interrupt = interrupt_in_chain(err)
        if interrupt is not None:  # a library wrapped a Ctrl+C: it is still an interruption
            raise interrupt from None
        if getattr(args, "debug", False):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"metasrgan {name}: error: {message}", file=sys.stderr)
        return _exit_code(err)


def _exit_code(err: BaseException) -> int:
    """2 for what the user asked (options, missing inputs), 1 for a file that failed."""
    if _is_usage_error(err) or isinstance(err, (FileNotFoundError, KeyError)):
        return 2
    if isinstance(err, OSError):  # permission denied, disk full, ...: the files failed
        return 1
    return 2  # other ValueErrors: a request refused before any work


if __name__ == "__main__":
    sys.exit(main())
