"""Benchmarks: every figure is a ratio against a baseline timed in the same run.

Run all with ``make bench`` (``python -m benchmarks``); each ``bench_*.py`` also runs alone
(``python -m benchmarks.bench_upscale --help``).  Results and targets: ``benchmarks/README.md``.
"""
