"""Benchmarks: each bench_<name>.py exposes run(quick=False) -> dict; run.py writes JSON results."""
