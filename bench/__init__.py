"""`make bench`: throughput, scaling, accuracy and resource figures for mnist-train.

Every measurement runs in its own subprocess (see `bench.procs`) and every
ratio is taken against a baseline measured in the same run. Entry point:
`python -m bench.run` (see bench/README.md).
"""
