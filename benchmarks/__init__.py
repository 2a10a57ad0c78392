"""Benchmark scripts. They report numbers; they never assert timings."""
