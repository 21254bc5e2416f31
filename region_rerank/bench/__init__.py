"""Benchmarks of region-rerank (``region-rerank bench speed``, ``bench quality`` and
``bench compare``).

* :mod:`~region_rerank.bench.timing`: medians over repeated runs and a timer of model
  forward passes (forward hooks), the "model floor".
* :mod:`~region_rerank.bench.workload`: an in-memory slice of the demo world (query scenes
  and KB candidates as PNG bytes, as a RAG pipeline would hand them over).
* :mod:`~region_rerank.bench.cache_memory`: peak memory of a full embedding cache, measured
  in a fresh process.
* :mod:`~region_rerank.bench.figures`: one function per figure.
* :mod:`~region_rerank.bench.speed`: settings, the run, the table and the JSON report.

* :mod:`~region_rerank.bench.aspect`: the worst-case aspect-ratio figure.
* :mod:`~region_rerank.bench.retrieval_speed`: the region-aware retrieval figures.
* :mod:`~region_rerank.bench.quality`: croppers compared over several generated worlds.
* :mod:`~region_rerank.bench.compare`: two quality reports of the same scenes, paired per
  seed.
* :mod:`~region_rerank.bench.report_file`: writing a report as JSON.
* :mod:`~region_rerank.bench.quality_cli`: the arguments of ``bench quality`` and
  ``bench compare``.
"""
