"""Several wordings of each training question, for paraphrase resampling.

A query of the generic layout may carry other wordings of its question in the field
``paraphrases`` (a list of strings; the demo world writes them with ``--paraphrases N``).
:func:`build_question_wordings` embeds each training query's question and its paraphrases
with the policy's own question encoder; during training
(:func:`~region_rerank.train.proposal_trainer.train_policy` with ``wordings=``), every time a
query is sampled its question is drawn uniformly among those wordings, so the policy learns
one decision for every way of asking and leans less on any one wording. The views, the
rewards and the validation set are unchanged: only the question the policy reads varies.
The wordings are held in memory padded to the most wordings and (for word vectors) the most
words of any query: ``Q x V x D`` floats (``Q x V x T x D``), e.g. 1,500 queries x 7 wordings
x 384 dimensions = 16 MB.

Example:
    >>> wordings = build_question_wordings(dataset, train_set.query_ids, encoder)  # doctest: +SKIP
    >>> result = train_policy(train_set, val_set, config, wordings=wordings)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from region_rerank.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from region_rerank.eval.datasets import EvalDataset

__all__ = [
    "PARAPHRASES_FIELD",
    "QuestionWordings",
    "build_question_wordings",
    "paraphrases_of",
    "require_paraphrases",
]

logger = logging.getLogger(__name__)

#: The query field (``EvalQuery.metadata`` key) holding other wordings of the question.
PARAPHRASES_FIELD = "paraphrases"


@dataclass(frozen=True, eq=False)
class QuestionWordings:
    """Embedded wordings of each training question.

    Attributes:
        query_ids: One per query, in the training set's order.
        embeddings: ``Q x V x D`` (or ``Q x V x T x D`` word vectors, zero-padded): wording
            0 is the question itself, then its paraphrases; padding beyond ``counts``.
        counts: ``Q`` number of real wordings of each query (at least 1).
    """

    query_ids: list[str]
    embeddings: torch.Tensor
    counts: torch.Tensor

    def sample(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One wording per query of ``index``, uniformly among its real wordings."""
        import torch

        counts = self.counts[index]
        pick = (torch.rand(len(index), generator=generator) * counts).long()
        pick = torch.minimum(pick, counts - 1)
        return self.embeddings[index, pick]

    def check_questions(self, question: torch.Tensor) -> None:
        """Raise :class:`ConfigError` unless wording 0 of each query is ``question`` (the
        training set's question features, same queries and order): wordings embedded by
        another encoder, or in another shape, would train the policy on another space."""
        import torch

        own = self.embeddings[:, 0]
        if own.dim() != question.dim() or own.shape[-1] != question.shape[-1]:
            raise ConfigError(
                f"the wordings have shape {tuple(own.shape)} per query but the training set's "
                f"questions {tuple(question.shape)}: embed them with the policy's encoder"
            )
        if own.shape[0] != question.shape[0]:
            raise ConfigError(f"{own.shape[0]} wordings for {question.shape[0]} training questions")
        # word vectors: compared on a common number of words
        both = _pad_cat([own, question.float()])
        if not torch.allclose(both[: len(own)], both[len(own) :], atol=1e-4):
            raise ConfigError(
                "the wordings' first entries are not the training set's questions: embed "
                "them with the encoder the training set was built with"
            )

    def subset(self, query_ids: Sequence[str]) -> QuestionWordings:
        """The wordings of ``query_ids``, in that order.

        Raises:
            ConfigError: One of them has no wordings here.
        """
        position = {qid: i for i, qid in enumerate(self.query_ids)}
        missing = [qid for qid in query_ids if qid not in position]
        if missing:
            raise ConfigError(
                f"no wordings for {len(missing)} training queries ({missing[:3]}): build them "
                "from the training set's query_ids"
            )
        rows = [position[qid] for qid in query_ids]
        return QuestionWordings(list(query_ids), self.embeddings[rows], self.counts[rows])


def paraphrases_of(query: Any) -> list[str]:
    """The distinct paraphrases of ``query`` (an :class:`~region_rerank.eval.datasets.EvalQuery`)
    other than its question; ``[]`` when it has none.

    Raises:
        ConfigError: The field is not a list of non-empty strings.
    """
    raw = query.metadata.get(PARAPHRASES_FIELD)
    if raw is None:
        return []
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise ConfigError(
            f"query {query.id!r}: {PARAPHRASES_FIELD!r} must be a list of strings, got "
            f"{type(raw).__name__}"
        )
    out: list[str] = []
    for text in raw:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"query {query.id!r}: every entry of {PARAPHRASES_FIELD!r} must be a "
                f"non-empty string, got {text!r}"
            )
        if text != query.question and text not in out:
            out.append(text)
    return out


def require_paraphrases(queries: Sequence[Any]) -> None:
    """Raise :class:`ConfigError` (before any feature is computed) unless some of
    ``queries`` have a paraphrase: resampling would change nothing."""
    if not any(paraphrases_of(q) for q in queries):
        _no_paraphrases()


def _no_paraphrases() -> NoReturn:
    raise ConfigError(
        f"no training query has a {PARAPHRASES_FIELD!r} field: give queries other "
        "wordings of their question (the demo world: --paraphrases N) or train without "
        "resampling the wording"
    )


def build_question_wordings(
    dataset: EvalDataset, query_ids: Sequence[str], encoder: Any, *, batch_size: int = 256
) -> QuestionWordings:
    """Embed the question and the paraphrases of each of ``query_ids`` with ``encoder``
    (a :class:`~region_rerank.croppers.policy_encoder.PolicyEncoder`, the one the policy
    reads at inference).

    Raises:
        ConfigError: A query id is not in ``dataset``, a ``paraphrases`` field is malformed,
            or no query has any paraphrase (resampling would change nothing).
    """
    import torch

    by_id = {q.id: q for q in dataset.queries}
    missing = [qid for qid in query_ids if qid not in by_id]
    if missing:
        raise ConfigError(f"{len(missing)} training queries are not in the dataset: {missing[:3]}")
    texts = [[by_id[qid].question, *paraphrases_of(by_id[qid])] for qid in query_ids]
    if not any(len(group) > 1 for group in texts):
        _no_paraphrases()
    flat = [t for group in texts for t in group]
    parts = [
        encoder.encode_questions(flat[i : i + batch_size]).float().cpu()
        for i in range(0, len(flat), batch_size)
    ]
    rows = _pad_cat(parts)
    width = max(len(t) for t in texts)
    embeddings = torch.zeros(len(texts), width, *rows.shape[1:])
    start = 0
    for i, group in enumerate(texts):
        embeddings[i, : len(group)] = rows[start : start + len(group)]
        start += len(group)
    counts = torch.tensor([len(t) for t in texts])
    logger.info(
        "%d wordings of %d training questions (%.1f per question)",
        len(flat),
        len(texts),
        len(flat) / len(texts),
    )
    return QuestionWordings(list(query_ids), embeddings, counts)


def _pad_cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate ``N x D`` blocks, or ``N x T x D`` blocks zero-padded to the longest T."""
    import torch

    if parts[0].dim() == 2:
        return torch.cat(parts)
    longest = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, 0, 0, longest - p.shape[1])) for p in parts])
