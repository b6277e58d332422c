"""Runnable examples (each one is run by tests/test_examples.py); a package only so that type
checking tells examples/b2bua.py from benchmarks/b2bua.py."""
