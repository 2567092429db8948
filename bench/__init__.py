"""rpm's benchmark suite: `make bench` (python -m bench)."""
