"""Scorers: bi-encoders (``clip``, ``sentence_transformers``) and cross-encoders.

* :mod:`~region_rerank.scorers.base` -- the scorer protocols and candidate embedding.
* :mod:`~region_rerank.scorers.clip` -- CLIP, SigLIP and SigLIP2 (transformers).
* :mod:`~region_rerank.scorers.sentence_transformers` -- sentence-transformers bi-encoders.
* :mod:`~region_rerank.scorers.cross_encoder` -- multimodal cross-encoders.
* :mod:`~region_rerank.scorers.specs` -- the scorer spec registry.
* ``_st_loading`` -- loading shared by the sentence-transformers scorers (private).
"""
