"""Tests of cache_backends/dynamodb/, one module per source module (fixtures: conftest.py)."""
