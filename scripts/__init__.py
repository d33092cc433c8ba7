"""Command lines run from the repository root (``python -m scripts.<name>``).

Each parses its arguments and prints; the work is done by ``devtools``, which
tests and the benchmarks import too.
"""
