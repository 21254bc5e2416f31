"""Croppers decide FULL or REGION for a query.

* :class:`~region_rerank.croppers.full.FullImageCropper` -- never crops (baseline).
* :class:`~region_rerank.croppers.vlm.VLMCropper` -- the Region-R1 Qwen-VL policy.
* :class:`~region_rerank.croppers.grounding.GroundingCropper` -- open-vocabulary detection.
* :class:`~region_rerank.croppers.text_match.TextMatchCropper` -- question/proposal matching.

Import them from their modules (or from :mod:`region_rerank`); nothing heavy loads here.
"""
