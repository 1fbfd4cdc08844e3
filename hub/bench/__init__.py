"""``hub bench``: throughput, latency and scaling of the real components, each figure measured
side by side with its baseline in the same run (issue #7, ``docs/benchmarks.md``).

Data: the demo generator (``hub.demo.generator``) with every citizen holding a tax record,
so N registry records face N sector records carrying the generator's injected mismatches.
Registry and tax table live in one source database, so the hand-written SQL baseline joins
exactly the tables the connectors read.

The hub's components run as subprocesses (``python -m hub.bench ROLE …``), one per
connector and one reconciler, as in production; their peak RSS (process tree, sampled) is
what figure 5 reports. Each worker prints one JSON line with what it measured. The servers
are embedded (the hub's database on a PostgreSQL server of its own) unless HUB_DATABASE_URL
and HUB_KAFKA_BOOTSTRAP name external ones; the broker is tansu, or Apache Kafka with
``--broker kafka``.

Modules: :mod:`~hub.bench.cli` (the command and the order of a run), :mod:`~hub.bench.runs`
(one scale's data and pipeline), :mod:`~hub.bench.workers` (the subprocesses),
:mod:`~hub.bench.probes` (process sampler, phase probe), :mod:`~hub.bench.baselines` (SQL
join, raw poll, raw producer), :mod:`~hub.bench.figures` (each figure and the table),
:mod:`~hub.bench.scale`, and :mod:`~hub.bench.candidates` (``hub bench-candidates``).

Figures (``--skip`` takes these names):

1. ``full``      capture (logical connectors: snapshot) + reconcile vs one SQL statement
2. ``stream``    reconciler events/s on the pre-filled topics vs a raw poll-and-count loop
3. ``capture``   connector rows/s (snapshot, and streaming from the slot) vs a raw producer
4. ``latency``   source commit → mismatch stored, p50/p95/p99, at a fixed offered load
5. ``scaling``   time and peak RSS at N/10 and N
"""
