"""Benchmarks: bench_<name>.py modules expose run(quick=False) -> dict; run.py writes JSON."""
