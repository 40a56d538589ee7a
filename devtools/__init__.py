"""What the tests and the benchmarks both need; neither imports the other (issue 13).

- ``processes``: the real command and helper processes started for a ``with`` block, free ports,
  waiting until a process answers;
- ``wrk``: running wrk and reading its report;
- ``soak``: the bounded load on loopback that ``tests/test_load.py`` checks and ``bench/load.py``
  reports figures for;
- ``clickhouse``: ClickHouse's HTTP interface in front of the real engine in-process (chdb).
- ``exposure_reference``: the experiment metrics' exposure sums user by user, the tests' reference
  and the bench's baseline.

Not shipped: ``[tool.setuptools.packages.find]`` packages only ``exporter`` and ``api``.
"""
