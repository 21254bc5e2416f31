"""Framework-free evaluation layer: benchmark loaders and retrieval metrics.

Modules (import them directly; this package imports nothing heavy):

- :mod:`region_rerank.eval.metrics`: Recall@K, conditional Recall@K with its coverage,
  MRR, NDCG@K, crop statistics, per-question-type breakdowns and a Markdown table.
- :mod:`region_rerank.eval.datasets`: the common in-memory :class:`EvalDataset`, the
  generic JSONL layout (loader and writer) and pool files.
- :mod:`region_rerank.eval.datasets_evqa`: Encyclopedic-VQA (CSV + KB JSON + images).
- :mod:`region_rerank.eval.datasets_infoseek`: InfoSeek (JSONL), converted to the E-VQA
  CSV layout.
"""
