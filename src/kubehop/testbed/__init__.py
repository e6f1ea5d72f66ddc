"""``kubehop testbed``: real Kubernetes clusters on one Linux machine.

Never imported by the migration core; it only provides clusters (and an inventory) for users
without their own, for the tests, the demo and the benchmarks.
"""
