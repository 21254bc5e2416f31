"""Training the crop policies with r-GRPO (docs/method.md section 4).

* :mod:`region_rerank.train.rewards` -- the region-aware mixture reward (relative and
  absolute variants), the FULL reward and the retrieval + re-ranking mix;
  :mod:`region_rerank.train.index_reward` -- the same statistics over the ranking of the
  whole index (the retrieval-aware reward); :mod:`region_rerank.train.trl_reward` -- the
  reward as a TRL reward function.
* :mod:`region_rerank.train.sampling` -- decision-balanced group sampling and
  group-relative advantages.
* :mod:`region_rerank.train.data` -- reward inputs built from the evaluation loaders and
  pools (only queries whose pool holds a positive, or, with an index of the KB, whose
  positive is indexed; candidate embeddings computed once);
  :mod:`region_rerank.train.policy_set` -- the light policy's training set (every action's
  features and pool scores, computed once); :mod:`region_rerank.train.wordings` -- other
  wordings of each training question, for paraphrase resampling.
* :mod:`region_rerank.train.proposal_trainer` -- the compact r-GRPO loop that trains the
  light learned cropper :class:`~region_rerank.croppers.proposal.ProposalPolicyCropper`;
  :mod:`region_rerank.train.proposal_run` -- training it on a dataset folder (the demo
  world or your own data), weights and card written.
* :mod:`region_rerank.train.vlm_trainer` -- r-GRPO of a Qwen-VL crop policy with a LoRA
  adapter on TRL's ``GRPOTrainer`` (settings: :mod:`~region_rerank.train.vlm_config`;
  decision-balanced generation: :mod:`~region_rerank.train.vlm_grpo`,
  :mod:`~region_rerank.train.balance`; prompts and reward columns:
  :mod:`~region_rerank.train.vlm_data`).

Nothing here is imported by ``import region_rerank``; torch loads inside the modules.

Command lines: :mod:`~region_rerank.train.proposal_cli` and
:mod:`~region_rerank.train.vlm_cli`.
"""
