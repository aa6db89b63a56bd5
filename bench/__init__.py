"""Reproducible benchmarks of TwinView against named peers; how to run them is in bench/README.md."""
