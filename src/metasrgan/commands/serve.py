"""``metasrgan serve``: the browser viewer with real-time arbitrary-scale zoom."""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("metasrgan.serve")  # -v/-q (metasrgan.logs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model file (.safetensors); default: the shipped model")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; the viewer has no login)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    parser.add_argument(
        "--max-upload-mb", type=float, default=256, help="largest scan accepted (default 256)"
    )
    parser.add_argument(
        "--max-voxels",
        type=int,
        default=64 * 1024**2,
        help="largest scan decoded, checked from its header first (default 67108864)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the page may be reached by besides loopback (repeatable; the "
        "address given to --host is added)",
    )
    parser.add_argument("--workers", type=int, default=2, help="zooms computed at once (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import socket

    try:
        import uvicorn

        from metasrgan.viewer.server import create_app
    except ImportError as err:
        raise ValueError(
            f"the viewer needs the 'serve' extra ({err.name} is missing): "
            "pip install 'metasrgan[serve]'"
        ) from None
    import torch

    from metasrgan.inference import pick_device
    from metasrgan.viewer.security import LOOPBACK
    from metasrgan.viewer.server import UploadLimits

    if args.workers < 1 or args.max_voxels < 1 or args.max_upload_mb <= 0:
        raise ValueError("--workers, --max-voxels and --max-upload-mb must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: binding {args.host} exposes the viewer (no login) to other machines",
            file=sys.stderr,
        )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {err.strerror}") from None
    port = sock.getsockname()[1]
    # the port is ours before the model loads: a busy port fails at once
    hosts = (*LOOPBACK, *args.allow_host) + (() if args.host in LOOPBACK else (args.host,))
    limits = UploadLimits(int(args.max_upload_mb * 1024**2), args.max_voxels)
    app = create_app(
        args.model,
        device=str(pick_device(args.device)),
        limits=limits,
        allowed_hosts=hosts,
        workers=args.workers,
    )
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    url = f"http://{shown}:{port}/"
    info = app.state.viewer.model_info
    if info["warning"]:
        log.warning("%s", info["warning"])
    print(f"metasrgan viewer: {url}  (Ctrl+C stops it)", flush=True)
    if args.open:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0
