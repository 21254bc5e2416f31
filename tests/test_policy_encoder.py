"""The light policy's feature encoders: the scorer-independent dense encoder, the memoised
word encoder, encoder cards checked on load, and training sets whose rewards still come
from the scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from region_rerank import ConfigError, ProposalPolicyCropper, Query
from region_rerank.croppers.encoder_specs import (
    DENSE_DEMO,
    DENSE_DEMO_SENTENCE,
    build_policy_encoder,
)
from region_rerank.croppers.policy_encoder import (
    DenseRegionEncoder,
    SentenceEncoder,
    StaticWordEncoder,
    ViewEncoder,
)
from region_rerank.croppers.proposal import PolicyArch, build_policy_net, save_proposal_policy
from region_rerank.demo.policy_encoder import demo_dense_encoder
from region_rerank.demo.scorer import DemoScorer
from region_rerank.demo.text_tower import load_text_model
from region_rerank.demo.tower import CHECKSUM_PATH, IMAGE_MEAN, IMAGE_STD, build_image_tower
from region_rerank.demo.world import make_world
from region_rerank.eval.runner import load_eval_data
from region_rerank.types import Box

pytestmark = pytest.mark.slow


class CountingModel:
    """A text model that counts the texts it encodes (wraps the real MiniLM tower)."""

    def __init__(self) -> None:
        self.model = load_text_model("cpu")
        self.encoded: list[str] = []

    def encode(self, texts: list[str]) -> torch.Tensor:
        self.encoded.extend(texts)
        return self.model.encode(texts)


@pytest.fixture(scope="module")
def words() -> CountingModel:
    return CountingModel()


def _demo_dense(words: CountingModel, **kw: Any) -> DenseRegionEncoder:
    """The ``dense:demo`` encoder, with a word model that counts what it encodes."""
    from region_rerank.demo.tower import load_image_tower

    sha = CHECKSUM_PATH.read_text().strip()
    return DenseRegionEncoder(
        load_image_tower(), StaticWordEncoder(words), mean=IMAGE_MEAN, std=IMAGE_STD,
        tower_sha256=sha, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("enc") / "world"
    make_world(root, seed=4, n_train=12, n_val=0, n_test=0, n_entities=30, kb_images=1)
    return root


def test_word_encoder_memoises_each_word_once(words: CountingModel) -> None:
    enc = StaticWordEncoder(words)
    first = enc.encode(["What colour is the biggest object?", "the BIGGEST thing"])
    n_calls = len(words.encoded)
    assert sorted(set(words.encoded)) == sorted(words.encoded)  # no word encoded twice
    again = enc.encode(["what colour is the biggest object?"])
    assert len(words.encoded) == n_calls  # all memoised: no model call
    torch.testing.assert_close(again[0], first[0])
    assert torch.allclose(first.norm(dim=-1), torch.ones(2), atol=1e-5)
    # the mean of the words' own vectors
    manual = torch.stack([words.model.encode([w])[0] for w in ("the", "biggest", "thing")])
    expected = torch.nn.functional.normalize(manual.mean(0), dim=0)
    torch.testing.assert_close(first[1], expected, atol=1e-5, rtol=1e-4)


def test_word_encoder_bounds_its_memo_and_handles_empty_text(words: CountingModel) -> None:
    small = StaticWordEncoder(words, max_words=3)
    out = small.encode(["one two three four five", "", "?!"])
    assert len(small._memo) == 3
    assert torch.isfinite(out).all() and out[1].abs().sum() == 0 and out[2].abs().sum() == 0
    big = StaticWordEncoder(words)
    torch.testing.assert_close(out[0], big.encode(["one two three four five"])[0])
    assert small.encode([]).shape == (0, small.dim)


def _scene(size: tuple[int, int] = (200, 120)) -> Any:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 10, 60, 60), fill=(220, 30, 30))
    draw.ellipse((120, 50, 180, 110), fill=(30, 30, 220))
    return img


def test_dense_encoder_one_forward_pools_every_box(words: CountingModel) -> None:
    enc = _demo_dense(words)
    assert enc.card() == demo_dense_encoder().card()  # what `dense:demo` builds
    a, b = _scene(), _scene((90, 300))
    views = [[None, Box(10, 10, 60, 60), Box(120, 50, 180, 110)], [None, Box(0, 0, 90, 100)]]
    out = enc.encode_views([a, b], views)
    assert [o.shape for o in out] == [(3, enc.dim), (2, enc.dim)]
    assert torch.allclose(out[0].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert (out[0][1] - out[0][2]).abs().max() > 1e-3  # the two objects differ
    alone = enc.encode_views([b], views[1:])[0]
    torch.testing.assert_close(alone, out[1], atol=1e-5, rtol=1e-4)  # batching changes nothing
    thin = enc.encode_views([_scene((3000, 4))], [[None, Box(0, 0, 100, 4)]])[0]
    assert thin.shape == (2, enc.dim) and torch.isfinite(thin).all()
    assert enc.encode_views([], []) == []
    card = enc.card()
    assert card["kind"] == "dense" and card["input_size"] == 160 and len(card["image_sha256"]) == 64
    assert card["question"] == "words" and enc.encode_questions(["a b"]).shape == (1, 2, enc.dim)


def test_dense_encoder_refuses_a_tower_it_cannot_split(words: CountingModel) -> None:
    with pytest.raises(ConfigError, match="trunk, AdaptiveAvgPool2d"):
        DenseRegionEncoder(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), StaticWordEncoder(words))


def test_sentence_question_encoder_reads_the_whole_question(words: CountingModel) -> None:
    enc = build_policy_encoder(DENSE_DEMO_SENTENCE)
    static = _demo_dense(words)
    card = enc.card()
    assert card["text"] == "sentence:all-MiniLM-L6-v2" and card["question"] == "sentence"
    assert {k: v for k, v in card.items() if k not in ("text", "question")} == {
        k: v for k, v in static.card().items() if k not in ("text", "question")
    }  # the same image side as dense:demo
    assert enc.question_words is False
    qs = ["the object left of the red circle", "the red object left of the circle"]
    q = enc.encode_questions(qs)
    torch.testing.assert_close(q, load_text_model("cpu").encode(qs))  # one pass per question
    bag = static.text.encode(qs)  # the same words: one bag, two sentences
    torch.testing.assert_close(bag[0], bag[1])
    assert (q[0] - q[1]).abs().max() > 1e-3
    assert enc.encode_questions([]).shape == (0, enc.dim)
    views = [[None, Box(10, 10, 60, 60)]]
    torch.testing.assert_close(
        enc.encode_views([_scene()], views)[0], static.encode_views([_scene()], views)[0]
    )
    with pytest.raises(ConfigError, match="words=True needs word vectors"):
        DenseRegionEncoder(enc.trunk, SentenceEncoder(words), words=True)


def test_a_word_vector_policy_refuses_the_sentence_encoder(
    tmp_path: Path, words: CountingModel
) -> None:
    path = tmp_path / "p.safetensors"
    _dense_policy(path, _demo_dense(words))
    sentence = build_policy_encoder(DENSE_DEMO_SENTENCE)
    with pytest.raises(ConfigError, match="text: trained with 'static-words:all-MiniLM-L6-v2'"):
        ProposalPolicyCropper(weights=path, encoder=sentence)
    # A sentence policy saved with its card reloads from its weights alone, and refuses the
    # word-vector encoder.
    arch = PolicyArch(encoder=DENSE_DEMO_SENTENCE, scorer="demo", question_words=False)
    net = build_policy_net(arch)
    torch.nn.init.normal_(net.out.weight)
    spath = tmp_path / "s.safetensors"
    save_proposal_policy(net, arch, spath, {"encoder": sentence.card()})
    loaded = ProposalPolicyCropper(weights=spath)
    assert isinstance(loaded.encoder, DenseRegionEncoder)
    assert isinstance(loaded.encoder.text, SentenceEncoder) and not loaded.encoder.question_words
    assert loaded.decide(Query(_scene(), "what is the lowest item?")).source == "proposal"
    with pytest.raises(ConfigError, match="question: trained with 'sentence'"):
        ProposalPolicyCropper(weights=spath, encoder=_demo_dense(words))


def test_training_refuses_an_arch_that_disagrees_with_its_encoder(
    tmp_path: Path, world: Path
) -> None:
    from region_rerank.train.proposal_run import train_proposal_policy

    arch = PolicyArch(encoder=DENSE_DEMO_SENTENCE, scorer="demo", question_words=True)
    with pytest.raises(
        ConfigError, match="reads question word vectors but the encoder does not give them"
    ):
        train_proposal_policy(world, tmp_path / "out", arch=arch)


def test_build_policy_encoder_specs() -> None:
    with pytest.raises(ConfigError, match="needs the scorer"):
        build_policy_encoder("scorer")
    with pytest.raises(ConfigError, match="unknown dense"):
        build_policy_encoder("dense:resnet")
    enc = build_policy_encoder("fake")
    assert isinstance(enc, ViewEncoder) and enc.card()["spec"] == "fake"


def _dense_policy(path: Path, encoder: DenseRegionEncoder) -> PolicyArch:
    arch = PolicyArch(encoder=DENSE_DEMO, scorer="demo", question_words=True)
    net = build_policy_net(arch)
    torch.nn.init.normal_(net.out.weight)  # not uniform: the decision depends on the inputs
    save_proposal_policy(net, arch, path, {"encoder": encoder.card()})
    return arch


def test_a_dense_policy_needs_no_scorer_and_refuses_another_encoder(
    tmp_path: Path, words: CountingModel
) -> None:
    enc = _demo_dense(words)
    text = enc.text
    path = tmp_path / "p.safetensors"
    _dense_policy(path, enc)
    cropper = ProposalPolicyCropper(weights=path, encoder=enc)
    assert cropper.scorer is None and cropper.card["encoder"] == enc.card()
    decision = cropper.decide(Query(_scene(), "what is the red square?"))
    assert decision.image_size == (200, 120) and decision.source == "proposal"
    built = ProposalPolicyCropper(weights=path)  # from the recorded spec
    assert isinstance(built.encoder, DenseRegionEncoder)
    other = _demo_dense(words, input_size=96)
    with pytest.raises(ConfigError, match=r"input_size: trained with 160, got 96"):
        ProposalPolicyCropper(weights=path, encoder=other)
    tower = DenseRegionEncoder(build_image_tower((8, 16, 16)), text, tower_sha256="0" * 64)
    with pytest.raises(ConfigError, match="image_sha256"):
        ProposalPolicyCropper(weights=path, encoder=tower)
    narrow = DenseRegionEncoder(
        build_image_tower((8, 16), dim=32), text, tower_sha256="1", words=False
    )
    with pytest.raises(ConfigError, match="32-dimensional features, the weights expect 384"):
        ProposalPolicyCropper((build_policy_net(PolicyArch()), PolicyArch()), encoder=narrow)
    with pytest.raises(
        ConfigError, match="does not read question word vectors but the encoder gives"
    ):
        ProposalPolicyCropper((build_policy_net(PolicyArch()), PolicyArch()), encoder=enc)


def test_word_vectors_are_pooled_by_learned_attention(words: CountingModel) -> None:
    text = StaticWordEncoder(words)
    batch = text.encode_words(["the red star", "", "a large blue striped circle"])
    assert batch.shape == (3, 5, text.dim) and batch[1].abs().sum() == 0
    torch.testing.assert_close(batch[0, 3:], torch.zeros(2, text.dim))  # padding
    net = build_policy_net(PolicyArch(question_words=True))
    pooled = net.pool_question(batch)
    assert torch.isfinite(pooled).all() and pooled[1].abs().sum() == 0
    torch.nn.init.zeros_(net.word_score.weight)
    torch.nn.init.zeros_(net.word_score.bias)  # equal weights: the normalised mean
    torch.testing.assert_close(net.pool_question(batch)[0], text.encode(["the red star"])[0])
    torch.nn.init.constant_(net.word_score.bias, 0.0)
    with torch.no_grad():
        net.word_score.weight.copy_(10 * text.encode_words(["red"])[0, 0])  # attends to "red"
    assert (
        torch.nn.functional.cosine_similarity(
            net.pool_question(batch[:1])[0], text.encode_words(["red"])[0, 0], dim=0
        )
        > 0.95
    )
    with pytest.raises(ValueError, match="one vector per question"):
        build_policy_net(PolicyArch()).pool_question(batch)
    with pytest.raises(ValueError, match="word vectors"):
        net.pool_question(batch[:, 0])


def test_training_set_rewards_come_from_the_scorer_whatever_the_encoder(
    world: Path, words: CountingModel
) -> None:
    from region_rerank.train.policy_set import build_policy_training_set

    data = load_eval_data(world, "train")
    scorer = DemoScorer()
    dense = _demo_dense(words)
    kw: dict[str, Any] = {"progress": False, "batch_size": 5}
    own = build_policy_training_set(data, scorer, PolicyArch(), **kw)
    arch = PolicyArch(encoder=DENSE_DEMO, question_words=True)
    ts = build_policy_training_set(data, scorer, arch, encoder=dense, **kw)
    assert ts.query_ids == own.query_ids and len(ts) > 0
    torch.testing.assert_close(ts.scores, own.scores, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ts.mask, own.mask)
    assert (ts.views - own.views).abs().max() > 0.05  # the policy reads other features
    first = load_eval_data(world, "train").queries[0]
    dense_q = dense.encode_questions([first.question])[0]  # T x D word vectors
    row = ts.question[ts.query_ids.index(first.id)]
    torch.testing.assert_close(row[: dense_q.shape[0]], dense_q)
    assert row[dense_q.shape[0] :].abs().sum() == 0  # padded to the longest question


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny.clip_models import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("clipdense") / "m")


def test_clip_dense_encoder_pools_the_patch_grid(tiny_clip_dir: Path, tmp_path: Path) -> None:
    from region_rerank import ClipScorer
    from region_rerank.croppers.policy_encoder import ClipDenseEncoder
    from region_rerank.model_options import ModelOptions

    clip = ClipScorer(str(tiny_clip_dir), model_options=ModelOptions(device="cpu"))
    enc = build_policy_encoder(f"dense:clip:{tiny_clip_dir}", clip)
    assert isinstance(enc, ClipDenseEncoder) and enc.clip is clip  # the scorer is reused
    img = _scene((96, 64))
    full, part = enc.encode_views([img], [[None, Box(0, 0, 48, 64)]])[0]
    # the whole-image RoI is the mean of the patch tokens, then CLIP's own head
    model = clip.model
    size = clip.image_spec.size
    from region_rerank.croppers.policy_encoder import _squashed

    pixels = _squashed([img], size, clip.image_spec.mean, clip.image_spec.std, "cpu", "bicubic")
    with torch.inference_mode():
        tokens = model.vision_model(pixel_values=pixels).last_hidden_state[:, 1:]
        manual = model.visual_projection(model.vision_model.post_layernorm(tokens.mean(1)))[0]
    torch.testing.assert_close(
        full, torch.nn.functional.normalize(manual, dim=0), atol=1e-5, rtol=1e-4
    )
    assert (full - part).abs().max() > 1e-4
    questions = enc.encode_questions(["what is red?"])
    torch.testing.assert_close(questions, clip.embed_texts(["what is red?"]))
    card = enc.card()
    assert card["image"] == f"clip:{tiny_clip_dir}" and card["dim"] == enc.dim == full.shape[0]
    arch = PolicyArch(
        dim=enc.dim, encoder=f"dense:clip:{tiny_clip_dir}", scorer=f"clip:{tiny_clip_dir}"
    )
    path = tmp_path / "clip_policy.safetensors"
    save_proposal_policy(build_policy_net(arch), arch, path, {"encoder": card})
    cropper = ProposalPolicyCropper(clip, path)
    assert cropper.encoder.card() == card
    assert cropper.decide(Query(img, "what is the red square?")).image_size == (96, 64)


def test_clip_dense_encoder_refuses_other_heads(tmp_path: Path) -> None:
    from region_rerank import ClipScorer
    from region_rerank.croppers.policy_encoder import ClipDenseEncoder
    from region_rerank.model_options import ModelOptions
    from tests.tiny.clip_models import build_tiny_siglip

    siglip = ClipScorer(
        str(build_tiny_siglip(tmp_path / "s")), model_options=ModelOptions(device="cpu")
    )
    with pytest.raises(ConfigError, match="not a CLIP model"):
        ClipDenseEncoder(siglip)


def test_the_shipped_dense_policy_carries_its_card_and_needs_no_scorer() -> None:
    from region_rerank.croppers.proposal import DENSE_WEIGHTS_PATH
    from region_rerank.factory import build_cropper

    cropper = build_cropper("proposal:dense")
    assert isinstance(cropper, ProposalPolicyCropper) and cropper.scorer is None
    assert isinstance(cropper.encoder, DenseRegionEncoder)
    card = cropper.card
    assert card["arch"]["encoder"] == DENSE_DEMO and card["arch"]["question_words"] is True
    assert card["encoder"] == cropper.encoder.card()  # checked on load, recorded in training
    assert (
        card["training"]["world"]["seed"] == 0 and card["training"]["val_at_best"]["cond_r1"] > 0.5
    )
    same = ProposalPolicyCropper.from_pretrained(DENSE_WEIGHTS_PATH)
    assert same.arch == cropper.arch
    decision = cropper.decide(Query(_scene(), "what is the pattern of the red square?"))
    assert decision.image_size == (200, 120) and decision.source == "proposal"


def test_the_dense_policy_pickles_faithfully() -> None:
    import pickle

    from region_rerank.factory import build_cropper

    cropper = build_cropper("proposal:dense")
    query = Query(_scene(), "what is the pattern of the red square?")
    copy = pickle.loads(pickle.dumps(cropper))
    assert copy.decide(query) == cropper.decide(query)
    assert copy.encoder.card() == cropper.encoder.card()
