"""Benchmarks, apart from production code: the labelled incident suite
(:mod:`.incidents`, :mod:`.incident_runs`), NAB (:mod:`.nab`), closed-loop latency
(:mod:`.loop`) and worker throughput (:mod:`.throughput`). Each prints its figures;
nothing in production imports this package.
"""
