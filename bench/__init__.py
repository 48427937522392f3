"""Benchmarks, one measurement per module (``python -m bench.decode``, ``bench.gateway``, ``bench.train``).

Each module's ``measure`` returns ``{metric: value}`` for ``kefu bench`` to collect; run alone, a module builds its
own environment (``kefu.bench.bench_environment``) and prints its numbers. Every ratio compares two paths measured
alternately in the same process run, so machine drift hits both sides alike.
"""
