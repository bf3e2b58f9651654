"""``metasrgan report RUN_DIR``: the run's tables and figures as one Markdown and HTML page."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="an evaluate --output folder or a run")
    parser.add_argument(
        "--format",
        choices=("md", "html", "both"),
        default="both",
        help="report.md, report.html or both (default)",
    )
    parser.add_argument(
        "--link-images",
        action="store_true",
        help="link the PNG files from the HTML page instead of embedding them",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    from metasrgan.report import build_report

    formats = ("md", "html") if args.format == "both" else (args.format,)
    for path in build_report(args.run_dir, formats, embed=not args.link_images):
        print(path)
    return 0
