"""``metasrgan train --config CONFIG [--init-from CKPT] [--resume RUN]``."""

from __future__ import annotations

import argparse
import sys
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
    parser.add_argument(
        "--vgg19", metavar="PATH",
        help="torchvision's VGG19 weights (vgg19-dcbb9e9d.pth) for the perceptual loss",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _config_and_run_dir(args: argparse.Namespace):
    """The config, the process group and the run folder (new, or ``--resume``'s)."""
    from metasrgan.inference import pick_device
    from metasrgan.train.config import load_config
    from metasrgan.train.runs import agree_run_dir, init_distributed

    if args.vgg19:
        import os

        if not Path(args.vgg19).is_file():
            raise FileNotFoundError(f"--vgg19: VGG19 weights file not found: {args.vgg19}")
        os.environ["METASRGAN_VGG19"] = str(args.vgg19)  # read by every stage's VGG19 loader
    if args.resume:
        if args.init_from:
            raise ValueError(
                "--init-from and --resume exclude each other (resume keeps its weights)"
            )
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"--resume {run_dir}: no such run folder")
        config_path = Path(args.config) if args.config else run_dir / "config.yaml"
        cfg = load_config(config_path, args.set)
        dist = init_distributed(pick_device(cfg.device).type)
        return cfg, dist, run_dir
    if not args.config:
        raise ValueError("--config is required (or --resume RUN)")
    cfg = load_config(args.config, args.set)
    # under torchrun every rank must agree on one new folder: rank 0 picks it
    dist = init_distributed(pick_device(cfg.device).type)
    return cfg, dist, agree_run_dir(dist, Path(args.runs), args.name or cfg.name)


def run(args: argparse.Namespace) -> int:
    from metasrgan.data.io import ImageReadError
    from metasrgan.train.loop import Trainer

    cfg, dist, run_dir = _config_and_run_dir(args)
    created = not args.resume  # agree_run_dir made it for this run
    trainer = None
    try:
        if dist.main:
            print(f"run folder: {run_dir}")
        trainer = Trainer(
            cfg, run_dir, init_from=args.init_from, resume=bool(args.resume),
            progress=not args.no_progress,
        )  # fmt: skip
        try:
            final = trainer.fit()
        except FloatingPointError as err:
            raise ValueError(f"{err}; the last saved state is in {run_dir / 'state'}") from err
    except ImageReadError as err:  # a data file failed (on_error: stop): exit 1, not 2
        if created and dist.main:
            remove_unfinished_run(run_dir)
        print(f"metasrgan train: error: {err}", file=sys.stderr)
        return 1
    except BaseException:
        if created and dist.main:
            if trainer is not None and trainer.writer is not None:
                trainer.writer.close()  # TensorBoard's thread must not write into it later
            remove_unfinished_run(run_dir)
        raise
    finally:
        if dist.world_size > 1:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.destroy_process_group()
    if dist.main:
        print(f"done: {trainer.step} steps; model {final}")
    return 0


def remove_unfinished_run(run_dir: Path) -> bool:
    """Remove a run folder this process created when the run failed or was interrupted
    before its first checkpoint: nothing in it could be resumed or used.  A folder with a
    checkpoint or a training state is kept (``--resume`` continues it)."""
    import shutil

    if not run_dir.is_dir():
        return False
    checkpoints = run_dir / "checkpoints"
    if (run_dir / "state").exists() or (run_dir / "state.old").exists():
        return False
    if checkpoints.is_dir() and any(checkpoints.glob("*.safetensors")):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    print(
        f"removed the unfinished run folder {run_dir} (no checkpoint was written)", file=sys.stderr
    )
    return True
