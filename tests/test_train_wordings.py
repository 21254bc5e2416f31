"""Paraphrase resampling: other wordings of each training question, embedded with the
policy's own encoder and drawn uniformly while training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_proposal_policy import ARCH, _dataset

from region_rerank.cli import main
from region_rerank.croppers.policy_encoder import ViewEncoder
from region_rerank.demo.world import make_world
from region_rerank.errors import ConfigError
from region_rerank.eval.datasets import EvalDataset, EvalQuery
from region_rerank.testing import FakeScorer
from region_rerank.train.policy_set import build_policy_training_set
from region_rerank.train.proposal_trainer import ProposalTrainingConfig, train_policy
from region_rerank.train.sampling import GroupSamplingConfig
from region_rerank.train.wordings import QuestionWordings, build_question_wordings, paraphrases_of


def _with_paraphrases(ds: EvalDataset, every: int = 1) -> EvalDataset:
    queries = []
    for i, q in enumerate(ds.queries):
        extra = {"paraphrases": [f"Name the {q.question.split()[3]} one.", q.question]}
        meta = extra if i % every == 0 else {}
        queries.append(EvalQuery(q.id, q.image, q.question, q.positives, metadata=meta))
    return EvalDataset(ds.name, tuple(queries), ds.kb, ds.pools)


def test_paraphrases_are_read_checked_and_deduplicated() -> None:
    same = ["Name it.", "Name it.", "What is it?"]
    q = EvalQuery("a", "img.png", "What is it?", metadata={"paraphrases": same})
    assert paraphrases_of(q) == ["Name it."]
    assert paraphrases_of(EvalQuery("b", "img.png", "What?")) == []
    for bad in ("Name it.", ["ok", ""], ["ok", 3]):
        with pytest.raises(ConfigError, match=r"query 'c'.*paraphrases"):
            paraphrases_of(EvalQuery("c", "img.png", "What?", metadata={"paraphrases": bad}))


def test_wordings_are_embedded_by_the_policy_encoder_and_sampled_among_real_ones() -> None:
    ds = _with_paraphrases(_dataset(6, 0), every=2)
    encoder = ViewEncoder(FakeScorer())
    ids = [q.id for q in ds.queries]
    w = build_question_wordings(ds, ids, encoder, batch_size=4)
    assert w.counts.tolist() == [2, 1, 2, 1, 2, 1]
    for i, q in enumerate(ds.queries):
        texts = [q.question, *paraphrases_of(q)]
        expected = encoder.encode_questions(texts)
        assert torch.allclose(w.embeddings[i, : len(texts)], expected, atol=1e-6)
        assert not w.embeddings[i, len(texts) :].any()  # padding
    gen = torch.Generator().manual_seed(0)
    index = torch.tensor([0, 1] * 200)
    drawn = w.sample(index, gen)
    for row, i in zip(drawn, index.tolist()):
        real = w.embeddings[i, : int(w.counts[i])]
        assert any(torch.equal(row, r) for r in real)  # never a padding row
    firsts = sum(torch.equal(row, w.embeddings[0, 0]) for row in drawn[0::2])
    assert 70 < firsts < 130  # both wordings of query 0 are drawn, about evenly
    assert all(torch.equal(row, w.embeddings[1, 0]) for row in drawn[1::2])
    sub = w.subset([ids[2], ids[0]])
    assert sub.query_ids == [ids[2], ids[0]] and torch.equal(sub.embeddings[1], w.embeddings[0])
    with pytest.raises(ConfigError, match="no wordings for 1"):
        w.subset(["nope"])
    with pytest.raises(ConfigError, match="no training query has a 'paraphrases'"):
        build_question_wordings(_dataset(3, 1), [q.id for q in _dataset(3, 1).queries], encoder)
    with pytest.raises(ConfigError, match="not in the dataset"):
        build_question_wordings(ds, ["nope"], encoder)


def test_training_reads_the_sampled_wordings() -> None:
    scorer = FakeScorer()
    ds = _with_paraphrases(_dataset(24, 0))
    train = build_policy_training_set(ds, scorer, ARCH, progress=False)
    val = build_policy_training_set(_dataset(8, 1), scorer, ARCH, progress=False)
    wordings = build_question_wordings(ds, train.query_ids, ViewEncoder(scorer))
    cfg = ProposalTrainingConfig(
        epochs=2, batch_queries=8, warmup_steps=1, sampling=GroupSamplingConfig(4)
    )
    clean = train_policy(train, val, cfg, wordings=wordings)
    assert all(math.isfinite(h["loss"]) for h in clean.history)
    # Poison every paraphrase (wording 1): a run that reads them samples from NaN
    # probabilities, which the group sampler refuses.
    poisoned = wordings.embeddings.clone()
    poisoned[:, 1] = float("nan")
    bad = QuestionWordings(wordings.query_ids, poisoned, wordings.counts)
    with pytest.raises(ConfigError, match="probs must be finite"):
        train_policy(train, val, cfg, wordings=bad)
    with pytest.raises(ConfigError, match="no wordings for"):
        train_policy(train, val, cfg, wordings=wordings.subset(train.query_ids[:3]))
    # Wordings from another encoder (same width) or of another shape are refused.
    other = QuestionWordings(
        wordings.query_ids, torch.randn_like(wordings.embeddings), wordings.counts
    )
    with pytest.raises(ConfigError, match="not the training set's questions"):
        train_policy(train, val, cfg, wordings=other)
    words = QuestionWordings(
        wordings.query_ids, wordings.embeddings[:, :, None].expand(-1, -1, 3, -1), wordings.counts
    )
    with pytest.raises(ConfigError, match="shape"):
        train_policy(train, val, cfg, wordings=words)


class _WordEncoder:
    """Word vectors: one row per word (a fixed random vector per distinct word), zero-padded
    to the longest text of each call, like the dense encoder's MiniLM word vectors."""

    dim = 8
    question_words = True

    def __init__(self) -> None:
        self.table: dict[str, torch.Tensor] = {}

    def encode_questions(self, texts: list[str]) -> torch.Tensor:
        rows = [[self.table.setdefault(w, torch.randn(self.dim)) for w in t.split()] for t in texts]
        out = torch.zeros(len(texts), max(len(r) for r in rows), self.dim)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.stack(r)
        return out


def test_word_vector_wordings_are_padded_per_query_and_checked() -> None:
    ds = _with_paraphrases(_dataset(5, 3))
    encoder = _WordEncoder()
    ids = [q.id for q in ds.queries]
    w = build_question_wordings(ds, ids, encoder, batch_size=3)  # batches of other widths
    longest = max(len(t.split()) for q in ds.queries for t in [q.question, *paraphrases_of(q)])
    assert w.embeddings.shape == (5, 2, longest, 8)
    for i, q in enumerate(ds.queries):
        for j, text in enumerate([q.question, *paraphrases_of(q)]):
            n = len(text.split())
            assert torch.equal(w.embeddings[i, j, :n], encoder.encode_questions([text])[0])
            assert not w.embeddings[i, j, n:].any()
    drawn = w.sample(torch.arange(5), torch.Generator().manual_seed(1))
    assert drawn.shape == (5, longest, 8)
    questions = encoder.encode_questions([q.question for q in ds.queries])
    w.check_questions(questions)  # a different padding width is not a difference
    with pytest.raises(ConfigError, match="not the training set's questions"):
        w.check_questions(questions.flip(0))


@pytest.mark.slow
def test_train_proposal_resamples_the_wording_of_a_world_with_paraphrases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = tmp_path / "world"
    make_world(
        world, seed=4, n_train=24, n_val=8, n_test=0, n_entities=40, kb_images=1,
        phrasing="train", paraphrases=3,
    )  # fmt: skip
    args = ["train", "proposal", "--scorer", "fake", "--epochs", "1", "--resample-wording"]
    out = tmp_path / "p"
    assert main([*args, "--world", str(world), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["resample_wording"] is True
    assert 2.0 < summary["wordings_per_question"] <= 4.0
    plain = tmp_path / "plain"
    make_world(plain, seed=4, n_train=24, n_val=8, n_test=0, n_entities=40, kb_images=1)
    assert main([*args, "--world", str(plain), "--out", str(tmp_path / "q")]) == 2
    assert "no training query has a 'paraphrases' field" in capsys.readouterr().err
    assert not (tmp_path / "q" / "train_set.pt").exists()  # refused before any feature
