"""Run every ``benchmarks/bench_*.py`` in turn, each in its own process (``make bench``).

``python -m benchmarks upscale train`` runs only the named ones.  Benchmarks run with their
own defaults (their options differ): run one alone to pass options.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    wanted = sys.argv[1:] if argv is None else argv
    here = Path(__file__).resolve().parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if wanted:
        unknown = [w for w in wanted if f"bench_{w}" not in names and w not in names]
        if unknown:
            print(f"unknown benchmark(s) {unknown}; available: {names}", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted or n.removeprefix("bench_") in wanted]
    failed = []
    for name in names:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"], cwd=here.parent)
        if code != 0:
            failed.append(f"{name} (exit {code})")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
