"""``metasrgan bids BIDS_DIR OUTPUT_DIR participant``: the BIDS App.

Follows the BIDS Apps convention (positional dataset, output folder and analysis level;
labels without the ``sub-``/``ses-`` prefix) and writes a BIDS derivatives dataset; see
:mod:`metasrgan.bids.app`.
"""

from __future__ import annotations

import argparse
import logging

from metasrgan.scale import TRAINED_SCALES

TRAINED = f"{TRAINED_SCALES[0]}-{TRAINED_SCALES[-1]}"

DESCRIPTION = f"""Super-resolve the scans of a BIDS dataset into a BIDS derivatives dataset
(sub-01/anat/sub-01_desc-superres_T1w.nii.gz + JSON sidecar).  The model was trained at
scales {TRAINED} (1.1, 1.2, ..., 4.0); other factors work, less well.

example:
  metasrgan bids /data/ds001 /data/ds001/derivatives/metasrgan participant \\
      --participant-label 01 02 --suffix T1w T2w --scale 2
  # one participant per job of a SLURM array (participants.tsv lists them):
  sbatch --array=1-40 --wrap 'metasrgan bids ds001 out participant --scale 2 \\
      --participant-label $(sed -n "$((SLURM_ARRAY_TASK_ID+1))p" ds001/participants.tsv | cut -f1)'
"""

log = logging.getLogger("metasrgan.bids")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from metasrgan.headers import DTYPES

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("bids_dir", help="the raw BIDS dataset (with dataset_description.json)")
    parser.add_argument("output_dir", help="the derivatives dataset to write")
    parser.add_argument(
        "analysis_level",
        choices=["participant"],
        help="BIDS Apps level; every scan is done per participant",
    )
    parser.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        metavar="LABEL",
        help="participants to do, without 'sub-' (default: all)",
    )
    parser.add_argument(
        "--session-label",
        "--session_label",
        nargs="+",
        metavar="LABEL",
        help="sessions to do, without 'ses-' (default: all)",
    )
    parser.add_argument(
        "--suffix",
        nargs="+",
        metavar="SUFFIX",
        help="BIDS suffixes to do, e.g. T1w T2w FLAIR (default: every NIfTI; "
        "4D series are skipped with a note)",
    )
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--scale", help=f"in-plane factor (trained: {TRAINED}), e.g. 2.5")
    how.add_argument(
        "--spacing",
        type=float,
        metavar="MM",
        help="target voxel size in mm on every axis (adds a res-<MM>mm entity)",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="output data type: float32 (default), int16 or the input's "
        "(scl_slope/scl_inter keep the values)",
    )
    parser.add_argument("--model", help="model file (.safetensors); default: the shipped model")
    parser.add_argument(
        "--adapt", default="auto", metavar="STEPS",
        help="updates of adaptation to each scan before it is upscaled (as 'upscale "
        "--adapt'); 0: the model as it is; auto (default): clean in-plane k-space only",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="redo participants already done")
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        metavar="N",
        help="participants run in parallel on this machine (default 1)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads per job (default: the cores shared among jobs)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    from metasrgan.bids.app import AppSettings
    from metasrgan.bids.app import run as run_app

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = AppSettings(
        scale=args.scale,
        spacing=args.spacing,
        dtype=args.dtype,
        model=args.model,
        device=args.device,
        overwrite=args.overwrite,
        adapt=args.adapt,
    )
    results = run_app(
        args.bids_dir,
        args.output_dir,
        settings,
        args.participant_label,
        args.session_label,
        args.suffix,
        n_jobs=args.n_jobs,
        threads=args.threads,
    )
    written = sum(len(r.written) for r in results)
    skipped = sum(len(r.skipped) for r in results)
    failed = [(r.label, rel, msg) for r in results for rel, msg in r.failed]
    done = sum(r.already_done for r in results)
    log.info(
        "%d participant(s): %d output(s) written, %d already done, %d skipped with a note, "
        "%d failed",
        len(results),
        written,
        done,
        skipped,
        len(failed),
    )
    return 1 if failed else 0
