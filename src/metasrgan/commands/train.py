"""``metasrgan train --config CONFIG [--init-from CKPT] [--resume RUN]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (see configs/)")
    parser.add_argument("--init-from", help="start the generator from this model file")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    parser.add_argument("--runs", default="runs", help="folder for new runs (default: runs)")
    parser.add_argument("--name", help="run name (default: the config's name)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set stages.0.steps=100 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    from metasrgan.train.config import load_config
    from metasrgan.train.loop import Trainer, new_run_dir

    if args.resume:
        run_dir = Path(args.resume)
        config_path = Path(args.config) if args.config else run_dir / "config.yaml"
        cfg = load_config(config_path, args.set)
    else:
        if not args.config:
            raise ValueError("--config is required (or --resume RUN)")
        cfg = load_config(args.config, args.set)
        import os

        rank = int(os.environ.get("RANK", "0"))
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # every rank must agree on the folder: rank 0 creates it, the name is fixed
            run_dir = Path(args.runs) / (args.name or cfg.name)
            if rank == 0:
                run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = new_run_dir(Path(args.runs), args.name or cfg.name)
    print(f"run folder: {run_dir}")
    trainer = Trainer(
        cfg, run_dir, init_from=args.init_from, resume=bool(args.resume),
        progress=not args.no_progress,
    )  # fmt: skip
    final = trainer.fit()
    print(f"done: {trainer.step} steps; model {final}")
    return 0
