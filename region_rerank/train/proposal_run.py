"""Train the light policy on a dataset folder: the entry behind ``region-rerank train
proposal``.

Any dataset in the generic JSONL layout works (the demo world, E-VQA or InfoSeek after
``region-rerank convert``, your own): no boxes are needed, the reward reads only each
query's positives and its pool (built with the scorer when the dataset has none). Features
are cached in the output folder, the selected weights are saved with their checksum and a
card (data, scorer, settings, validation metrics), and a reward curve and ``summary.json``
are written beside them.

Example:
    >>> summary = train_proposal_policy("data/my_kb", "out/my_policy",
    ...                                 scorer=build_scorer("clip"))  # doctest: +SKIP
    >>> cropper = ProposalPolicyCropper.from_pretrained("out/my_policy")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from region_rerank._validate import check_range
from region_rerank.errors import ConfigError
from region_rerank.train.proposal_trainer import (
    ProposalTrainingConfig,
    plot_reward_curve,
    train_policy,
)

if TYPE_CHECKING:
    from region_rerank.eval.datasets import EvalDataset
    from region_rerank.train.policy_set import PolicyTrainingSet

__all__ = ["training_splits", "train_proposal_policy"]

logger = logging.getLogger(__name__)


def _held_out(query_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(query_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def training_splits(
    data: str | os.PathLike[str],
    train_split: str | None = "train",
    val_split: str | None = "val",
    *,
    val_fraction: float = 0.1,
) -> tuple[EvalDataset, EvalDataset]:
    """The training and validation datasets of ``data``.

    ``data/train_split`` is the training set (``data`` itself when ``train_split`` is
    ``None`` or that folder does not exist); ``data/val_split`` the validation set when it
    exists, else a ``val_fraction`` of the training queries, chosen by a hash of their ids
    (the same queries whatever the file order).

    Raises:
        ConfigError: ``val_fraction`` outside (0, 1), or a split left empty.
        FileNotFoundError: No queries file.
    """
    from region_rerank.eval.runner import load_eval_data

    check_range("val_fraction", val_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    root = Path(data)
    train_dir = root / train_split if train_split else root
    train = load_eval_data(root, train_split if train_dir.is_dir() and train_split else None)
    if val_split and (root / val_split / "queries.jsonl").is_file():
        return train, load_eval_data(root, val_split)
    held = [q for q in train.queries if _held_out(q.id, val_fraction)]
    kept = [q for q in train.queries if not _held_out(q.id, val_fraction)]
    if not held or not kept:
        raise ConfigError(
            f"{len(train.queries)} training queries leave {len(kept)} to train and "
            f"{len(held)} to validate with val_fraction={val_fraction}; add queries or a "
            f"{val_split!r} split"
        )
    logger.info("no %r split: %d of %d queries held out for validation", val_split,
                len(held), len(train.queries))  # fmt: skip

    def part(name: str, queries: list[Any]) -> EvalDataset:
        pools = {q.id: train.pools[q.id] for q in queries if q.id in train.pools}
        return replace(train, name=f"{train.name}:{name}", queries=tuple(queries), pools=pools)

    return part("train", kept), part("val", held)


def _world_card(world: Path) -> dict[str, Any] | None:
    """The training world's seed and scene options (from its ``world.json``), for the
    weights' card; ``None`` for a folder without a manifest."""
    try:
        manifest = json.loads((world / "world.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    scene = dict(manifest.get("scene_config", {}))
    scene.pop("templates", None)  # long; the phrasing names the frames
    return {"seed": manifest.get("seed"), "scene": scene}


def _set_source(
    data: str | Path, dataset: Any, encoder: Any, scorer: str, detector: Any = None
) -> dict[str, Any]:
    """What a cached training set is built from: the data folder, a digest of its queries
    (ids, questions, images, positives: another world with the same ids differs), the
    encoder's card, the scorer and the detector's card (retrained detector weights under
    the same spec give other boxes)."""
    digest = hashlib.sha256()
    for q in dataset.queries:
        digest.update(repr((q.id, q.question, str(q.image), tuple(q.positives))).encode())
    source = {
        "data": str(Path(data).resolve()),
        "queries": digest.hexdigest(),
        "encoder": encoder.card(),
        "scorer": scorer,
    }
    if detector is not None:
        source["detector"] = detector.card()
    return source


def _default_arch(
    scorer: Any, scorer_spec: str | None, spec: str, encoder: Any, detector: str
) -> Any:
    """The default architecture, sized to the encoder's features, naming the scorer."""
    from region_rerank.croppers.proposal import PolicyArch

    name = scorer_spec or str(getattr(scorer, "name", type(scorer).__name__))
    return PolicyArch(
        dim=encoder.dim,
        scorer=name,
        encoder=spec,
        question_words=encoder.question_words,
        detector=detector,
    )


def train_proposal_policy(
    data: str | Path,
    out_dir: str | Path,
    *,
    config: ProposalTrainingConfig | None = None,
    arch: Any = None,
    weights_out: str | Path | None = None,
    scorer: Any = None,
    scorer_spec: str | None = None,
    encoder: str | None = None,
    detector: str | None = None,
    train_split: str | None = "train",
    val_split: str | None = "val",
    val_fraction: float = 0.1,
    progress: bool = True,
    resample_wording: bool = False,
) -> dict[str, Any]:
    """Features for ``data``'s training and validation queries (cached in ``out_dir``),
    r-GRPO training, the selected weights saved with their checksum, the reward curve and
    a summary written to ``out_dir``.

    Args:
        data: A dataset folder in the generic layout (``kb.jsonl`` and split folders with
            ``queries.jsonl``, optional ``pools.jsonl``), e.g. a demo world.
        out_dir: Where caches, the weights, ``reward_curve.png`` and ``summary.json`` go.
        config: Training settings (``config.reward.retrieval_weight > 0`` also builds an
            index of the KB for the retrieval-aware reward).
        arch: :class:`~region_rerank.croppers.proposal.PolicyArch` (default: sized to the
            scorer's embeddings, naming it).
        weights_out: Safetensors path (default ``out_dir/proposal_policy.safetensors``).
        scorer: The frozen scorer (default: the demo scorer on CPU).
        scorer_spec: The spec recorded in the weights, from which
            :class:`~region_rerank.croppers.proposal.ProposalPolicyCropper` rebuilds the
            scorer (default: the scorer's name).
        encoder: The policy's feature encoder spec
            (:func:`~region_rerank.croppers.policy_encoder.build_policy_encoder`; default
            ``arch.encoder``, else ``scorer``); its card is saved with the weights.
        detector: The proposal detector spec (``demo``; default ``arch.detector``, else
            none), recorded in the weights.
        train_split, val_split, val_fraction: See :func:`training_splits`.
        progress: Show progress bars while embedding.
        resample_wording: Train on the ``paraphrases`` of the training queries as well:
            each time a query is sampled, the policy reads its question or one of its
            paraphrases, drawn uniformly (:mod:`region_rerank.train.wordings`).

    Returns:
        The summary (also written as ``summary.json`` and stored in the weights' card).
    """
    from region_rerank.cache import EmbeddingCache
    from region_rerank.croppers.encoder_specs import SCORER_ENCODER, build_policy_encoder
    from region_rerank.croppers.proposal import save_proposal_policy
    from region_rerank.eval.pools import kb_index
    from region_rerank.train.policy_set import (
        build_policy_training_set,
        cached_training_set,
        save_training_set,
    )

    cfg = config or ProposalTrainingConfig()
    if scorer is None:
        from region_rerank.demo.scorer import DemoScorer
        from region_rerank.model_options import ModelOptions

        scorer = DemoScorer(model_options=ModelOptions(device="cpu"))
    spec = encoder or (arch.encoder if arch is not None else SCORER_ENCODER)
    if arch is not None and arch.encoder != spec:
        raise ConfigError(f"encoder={spec!r} but arch.encoder={arch.encoder!r}")
    feature_encoder = build_policy_encoder(
        spec, scorer, question_words=arch.question_words if arch is not None else True
    )
    if arch is not None:
        arch.check_question_form(feature_encoder)
    if arch is not None and detector is not None and arch.detector != detector:
        raise ConfigError(f"detector={detector!r} but arch.detector={arch.detector!r}")
    arch = arch or _default_arch(scorer, scorer_spec, spec, feature_encoder, detector or "")
    proposal_detector = None
    if arch.detector:  # built once: its boxes for the features, its card for the weights
        from region_rerank.croppers.encoder_specs import build_proposal_detector

        proposal_detector = build_proposal_detector(arch.detector)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    datasets = training_splits(data, train_split, val_split, val_fraction=val_fraction)
    if resample_wording:
        from region_rerank.train.wordings import require_paraphrases

        require_paraphrases(datasets[0].queries)
    sets: dict[str, PolicyTrainingSet] = {}
    cache = EmbeddingCache()
    retrieval = cfg.reward.retrieval_weight > 0
    index = None
    for split, dataset in zip(("train", "val"), datasets):
        path = out / (f"{split}_set_index.pt" if retrieval else f"{split}_set.pt")
        source = _set_source(data, dataset, feature_encoder, arch.scorer, proposal_detector)
        cached = cached_training_set(path, arch, source)
        if cached is not None:
            sets[split] = cached
            continue
        if retrieval and index is None:
            index = kb_index(dataset, scorer, cache=cache, progress=progress)
        ts = build_policy_training_set(
            dataset,
            scorer,
            arch,
            cache=cache,
            progress=progress,
            index=index,
            encoder=feature_encoder,
            detector=proposal_detector,
        )
        save_training_set(ts, path, source)
        sets[split] = ts
    wordings = None
    if resample_wording:
        from region_rerank.train.wordings import build_question_wordings

        wordings = build_question_wordings(datasets[0], sets["train"].query_ids, feature_encoder)
    feature_seconds = time.perf_counter() - t0
    result = train_policy(sets["train"], sets["val"], cfg, wordings=wordings)
    summary: dict[str, Any] = {
        "data": str(data),
        "scorer": arch.scorer,
        "encoder": feature_encoder.card(),
        "train_queries": len(sets["train"].for_reward(cfg.reward)),
        "val_queries": len(sets["val"].for_reward(cfg.reward)),
        "feature_seconds": round(feature_seconds, 1),
        "train_seconds": round(result.seconds, 1),
        "epochs_run": len(result.val_history),
        "best_epoch": result.best_epoch,
        "val_at_best": result.val_history[result.best_epoch - 1],
        "world": _world_card(Path(data)),
        "config": {
            "epochs": cfg.epochs,
            "batch_queries": cfg.batch_queries,
            "group_size": cfg.sampling.group_size,
            "balanced": cfg.sampling.balanced,
            "scale_rewards": cfg.sampling.scale_rewards,
            "clip_eps": cfg.clip_eps,
            "inner_epochs": cfg.inner_epochs,
            "beta": cfg.beta,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "select_by": cfg.select_by,
            "reward": {**cfg.reward.__dict__, "weights": list(cfg.reward.weights)},
            "resample_wording": resample_wording,
        },
    }
    if wordings is not None:
        summary["wordings_per_question"] = round(float(wordings.counts.float().mean()), 2)
    target = Path(weights_out) if weights_out else out / "proposal_policy.safetensors"
    meta = {"training": summary, "encoder": feature_encoder.card()}
    if proposal_detector is not None:
        meta["detector"] = proposal_detector.card()
    summary["sha256"] = save_proposal_policy(result.net, arch, target, meta)
    summary["weights"] = str(target)
    plot_reward_curve(
        result, out / "reward_curve.png", title=f"proposal policy r-GRPO ({target.name})"
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "history.json").write_text(
        json.dumps({"train": result.history, "val": result.val_history}) + "\n", encoding="utf-8"
    )
    return summary
