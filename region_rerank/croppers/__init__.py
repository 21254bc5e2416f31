"""Croppers decide FULL or REGION for a query.

* :class:`~region_rerank.croppers.full.FullImageCropper` -- never crops (baseline).
* :class:`~region_rerank.croppers.vlm.VLMCropper` -- the Region-R1 Qwen-VL policy.
* :class:`~region_rerank.croppers.grounding.GroundingCropper` -- open-vocabulary detection.
* :class:`~region_rerank.croppers.text_match.TextMatchCropper` -- question/proposal matching.

Import them from their modules (or from :mod:`region_rerank`); nothing heavy loads here.

Also: :mod:`~region_rerank.croppers.base` (the protocol),
:mod:`~region_rerank.croppers.baselines` (centre and random crops),
:mod:`~region_rerank.croppers.proposal` (the light learned policy; its network and
weights file: :mod:`~region_rerank.croppers.proposal_net`; what it reads, from the scorer
or from a fixed scorer-independent encoder: :mod:`~region_rerank.croppers.policy_encoder`,
whose specs :mod:`~region_rerank.croppers.encoder_specs` builds),
:mod:`~region_rerank.croppers.question_phrases` (detector queries from a question),
:mod:`~region_rerank.croppers.vlm_prompt` / :mod:`~region_rerank.croppers.vlm_output`
(what the VLM policy is asked and how its answer is read) and
:mod:`~region_rerank.croppers.specs` (the cropper spec registry).
"""
