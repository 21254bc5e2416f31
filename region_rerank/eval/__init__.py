"""Framework-free evaluation layer: benchmark loaders and retrieval metrics.

Modules (import them directly; this package imports nothing heavy):

- :mod:`region_rerank.eval.metrics`: Recall@K, conditional Recall@K with its coverage,
  MRR, NDCG@K, crop statistics, per-question-type breakdowns and a Markdown table.
- :mod:`region_rerank.eval.datasets`: the common in-memory :class:`EvalDataset`, the
  generic JSONL layout (loader and writer) and pool files.
- :mod:`region_rerank.eval.datasets_evqa`: Encyclopedic-VQA (CSV + KB JSON + images).
- :mod:`region_rerank.eval.datasets_infoseek`: InfoSeek (question JSONL joined with
  ``*_withkb`` by ``data_id``, Wiki6M or an E-VQA-schema KB, OVEN images).
- :mod:`region_rerank.eval.kb_readers` / :mod:`region_rerank.eval.kb_text`: streamed KB
  readers and the entry-text assembly; :mod:`region_rerank.eval.image_layouts`: image
  folder layouts and id maps.
- :mod:`region_rerank.eval.convert`: the released files -> the generic layout;
  :mod:`region_rerank.eval.pool_import`: EchoSight / OMGM published pools.

docs/datasets.md describes the files, layouts and commands.

Also: :mod:`region_rerank.eval.json_stream` (streamed JSON / JSONL readers),
:mod:`region_rerank.eval.pools` (building pools), :mod:`region_rerank.eval.runner` and
:mod:`region_rerank.eval.report` (the evaluation run and its report), and the private
``_rows`` / ``_schema`` (row helpers and the dataset types).
"""
