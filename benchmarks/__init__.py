"""The policylayer_core benchmark: `python -m benchmarks` (see docs/performance.md).

One process measures the floors, every path of `engine.decide()` in the budget table,
argument validation, memory per bucket, and the peers on the nearest equivalent job,
then prints one table with ratios to the floor and to the peers, and the verdict on
each budget.
"""
