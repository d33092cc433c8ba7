"""Black-box: gunicorn, nginx and the benchmarks run as processes, checked as clients see them."""
