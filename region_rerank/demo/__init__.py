"""The embedded offline demo world: a seeded synthetic clutter benchmark with known answers.

* :mod:`region_rerank.demo.entities` -- the knowledge base of procedurally drawn entities
  (shape x colour x pattern) with made-up names, encyclopedic texts and a renderer.
* :mod:`region_rerank.demo.scenes` -- :class:`~region_rerank.demo.scenes.SceneConfig` and
  the query-scene generator (target + distractors + clutter, a referring question and the
  ground-truth box).
* :mod:`region_rerank.demo.phrasing` -- the phrasing families of the references and
  question frames (training families and a held-out one).
* :mod:`region_rerank.demo.world` -- :func:`~region_rerank.demo.world.make_world`, which
  writes the generic JSONL layout (``kb.jsonl``, ``{split}/queries.jsonl``, PNG images and
  a ``world.json`` manifest).

This package is not imported by ``import region_rerank``; it needs numpy and Pillow.

Also: :mod:`region_rerank.demo.scorer` (the demo scorer, its text tower in
:mod:`region_rerank.demo.text_tower`), :mod:`region_rerank.demo.tower`
and :mod:`region_rerank.demo.tower_training` (its image tower and how it was trained),
:mod:`region_rerank.demo.policy_encoder` (the ``dense:demo`` encoder of the light policy),
:mod:`region_rerank.demo.detector` and :mod:`region_rerank.demo.detector_training` (the
class-agnostic object detector whose boxes the light policy can add to its proposals),
:mod:`region_rerank.demo.run` (``region-rerank demo``), and ``_layout`` (scene geometry,
private).
"""
