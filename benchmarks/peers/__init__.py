"""The comparison peers of ``benchmarks/cps.py``: auto-answering UASes on other SIP stacks."""
