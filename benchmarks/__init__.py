"""Benchmark scripts (run each as a script); a package so that type checking tells
benchmarks/b2bua.py from examples/b2bua.py."""
