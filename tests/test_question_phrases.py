"""Detector phrases from questions: documented examples, bounds and fuzzing."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from region_rerank.croppers.question_phrases import (
    GENERIC_PHRASE,
    MAX_PHRASE_CHARS,
    MAX_PHRASE_WORDS,
    MAX_QUESTION_CHARS,
    clean_phrases,
    detector_texts,
    phrases_from_question,
)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When was this bridge built?", ["bridge"]),
        ("What is the name of the red car on the left?", ["red car"]),
        ("Which country is this building located in?", ["building"]),
        ("How tall is this tower?", ["tower"]),
        ("Who designed this building?", ["building"]),
        ("What species is this bird?", ["bird"]),
        ("What model is this car?", ["car"]),
        ("Who is the architect of this building?", ["building"]),
        ("What is the population of this town?", ["town"]),
        ("What does this plant eat?", ["plant"]),
        ("Where is the Eiffel Tower's architect from?", ["eiffel tower"]),
    ],
)
def test_documented_examples(question: str, expected: list[str]) -> None:
    assert phrases_from_question(question) == expected


def test_subject_after_this_comes_first_then_question_order() -> None:
    assert phrases_from_question("What is the name of the river that flows under this bridge?") == [
        "bridge",
        "river",
    ]
    assert phrases_from_question("In which year was the church on the hill consecrated?") == [
        "church",
        "hill",
    ]


def test_answer_nouns_are_content_when_not_asked_for() -> None:
    # "city" follows "this": it is the pictured entity, not the answer type.
    assert phrases_from_question("How many people live in this city?") == ["city", "people"]
    # Nothing else left: the lenient pass keeps the answer noun rather than giving up.
    assert phrases_from_question("What is the name?") == ["name"]


@pytest.mark.parametrize("question", ["", "   ", "???", "\x00\x01\x02", "What is it?", None])
def test_no_content_falls_back_to_generic_phrase(question: str) -> None:
    assert phrases_from_question(question) == [GENERIC_PHRASE]


def test_max_phrases_is_respected_and_floored_at_one() -> None:
    question = "What do the dog, the cat, the horse and the cow near the barn have in common?"
    assert len(phrases_from_question(question, max_phrases=3)) == 3
    assert phrases_from_question(question, max_phrases=2) == ["dog", "cat"]
    for bad in (0, -4):
        assert phrases_from_question(question, max_phrases=bad) == ["dog"]


def test_long_noun_phrase_keeps_its_head_words() -> None:
    phrases = phrases_from_question("Is this big old rusty green steel railway bridge famous?")
    assert len(phrases[0].split()) <= MAX_PHRASE_WORDS
    assert phrases[0].endswith("bridge")


def test_control_and_zero_width_characters_separate_words() -> None:
    assert phrases_from_question("what\x00is\x07this\u200bdog") == ["dog"]
    assert phrases_from_question("When\twas\nthis\r\nbridge\x0bbuilt?") == ["bridge"]


def test_non_latin_questions_give_bounded_phrases() -> None:
    chinese = phrases_from_question("这座桥是什么时候建的\uff1f")
    assert chinese and all(0 < len(p) <= MAX_PHRASE_CHARS for p in chinese)
    assert chinese[0].startswith("这座桥")
    assert phrases_from_question("Какой высоты эта башня?")[0].endswith("башня")


def test_huge_questions_are_cut_and_fast() -> None:
    cases = ["bridge " * 20_000, "x" * 100_000, "\x00" * 100_000, "这" * 100_000]
    start = time.perf_counter()
    results = [phrases_from_question(q) for q in cases]
    assert time.perf_counter() - start < 1.0
    for phrases in results:
        assert phrases and all(0 < len(p) <= MAX_PHRASE_CHARS for p in phrases)
    # Content after the documented cut is never read.
    tail = "a" * MAX_QUESTION_CHARS + " giraffe"
    assert "giraffe" not in " ".join(phrases_from_question(tail))


def test_deterministic() -> None:
    question = "What is the man in the blue shirt holding?"
    assert phrases_from_question(question) == phrases_from_question(question)
    assert phrases_from_question(question) == ["man", "blue shirt"]


@settings(max_examples=300, deadline=None)
@given(question=st.text(max_size=400), max_phrases=st.integers(min_value=-3, max_value=20))
def test_fuzz_never_raises_and_is_bounded(question: str, max_phrases: int) -> None:
    phrases = phrases_from_question(question, max_phrases=max_phrases)
    assert isinstance(phrases, list)
    assert 1 <= len(phrases) <= max(1, max_phrases)
    assert len(set(phrases)) == len(phrases)
    for phrase in phrases:
        assert isinstance(phrase, str)
        assert 0 < len(phrase) <= MAX_PHRASE_CHARS
        assert phrase == phrase.strip()
        assert not any(unicodedata.category(ch)[0] == "C" for ch in phrase)


@settings(max_examples=50, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(["what", "is", "this", "red", "car", "the", "of", "built", "\x00", "桥"]),
        max_size=30,
    )
)
def test_fuzz_word_soup(words: list[str]) -> None:
    question = " ".join(words)
    phrases = phrases_from_question(question)
    assert 1 <= len(phrases) <= 3 and all(0 < len(p) <= MAX_PHRASE_CHARS for p in phrases)
    # With room for every run, the question's last content word ends some phrase (a run
    # keeps its last words). With the default limit of 3 it may be cut, see below.
    everything = phrases_from_question(question, max_phrases=len(words) + 1)
    if words and words[-1] in ("red", "car", "桥"):
        assert any(p.split()[-1] == words[-1] for p in everything)
    assert everything[: len(phrases)] == phrases


def test_max_phrases_keeps_the_first_runs() -> None:
    words = "桥 桥 what 桥 what red what car"
    assert phrases_from_question(words) == ["桥 桥", "桥", "red"]
    assert phrases_from_question(words, max_phrases=4) == ["桥 桥", "桥", "red", "car"]


def test_clean_phrases_normalises_user_phrases() -> None:
    assert clean_phrases(["  red\x00car ", "", "red car", 3, "dog"]) == ["red car", "dog"]
    assert clean_phrases("a single phrase") == ["a single phrase"]
    assert clean_phrases(None) == []
    assert clean_phrases(["a", "b", "c", "d"], max_phrases=2) == ["a", "b"]
    assert len(clean_phrases(["y" * 10_000])[0]) == 2 * MAX_PHRASE_CHARS


def test_detector_texts_per_family() -> None:
    dino = detector_texts([["Red car", "St. Paul"], [""]], "grounding-dino")
    assert dino == ["red car. st paul.", f"{GENERIC_PHRASE}."]
    owl = detector_texts([["a"], ["b", "c", "d"]], "owlv2", "a photo of a {}")
    assert owl == [
        ["a photo of a a"] * 3,  # padded with its own phrase, never with " "
        ["a photo of a b", "a photo of a c", "a photo of a d"],
    ]
