"""Derive open-vocabulary detector queries ("bridge", "red car") from a question.

The detector croppers need short noun phrases, not questions: OWL-ViT and Grounding DINO
match text against image regions, and "When was this bridge built?" is not a region.
:func:`phrases_from_question` is a small, deterministic, dependency-free heuristic:

1. **Bounded input.** Only the first :data:`MAX_QUESTION_CHARS` characters are read and
   at most :data:`MAX_WORDS` words are considered, so a 100 KB question costs the same as
   a short one. Text is NFKC-normalised, control / format characters become spaces, and
   everything is lower-cased (Grounding DINO expects lower-case labels).
2. **Words.** Runs of Unicode letters and digits (``don't``, ``t-shirt`` stay whole; a
   possessive ``'s`` ends the phrase). Non-Latin scripts are kept; a script without spaces
   (Chinese, Japanese) becomes one long word, cut to :data:`MAX_WORD_CHARS` characters.
3. **Stop words.** Wh-words, auxiliaries, determiners, pronouns and deictics ("this",
   "these", "the"), prepositions and conjunctions, image words ("picture", "shown"),
   spatial words ("left", "background"), measuring adjectives ("tall", "old"), numbers,
   and common question verbs with their tails ("built", "located in", "designed").
   Answer-type nouns ("name", "year", "species", "country", "architect"...) are stops
   right after a wh-word ("which *country*"), a possessive ("the tower's *architect*")
   or right before "of" ("the *name* of"), and content elsewhere ("this *city*"). The
   lists are English; other languages keep all their words.
4. **Phrases.** Maximal runs of the remaining words, each cut to its last
   :data:`MAX_PHRASE_WORDS` words (the head noun of an English noun phrase comes last).
   Runs right after "this" / "these" come first (they name the pictured entity), the
   others follow in question order; duplicates are removed.
5. **Fallbacks.** If nothing survives, the pass is repeated keeping the answer-type nouns
   and verbs ("What year was it built?" -> ``["year", "built"]``); if still nothing, the
   result is ``[GENERIC_PHRASE]`` (``"object"``). The function never raises and always
   returns between 1 and ``max(1, max_phrases)`` distinct, non-empty strings of at most
   :data:`MAX_PHRASE_CHARS` characters.

Examples:
    >>> phrases_from_question("When was this bridge built?")
    ['bridge']
    >>> phrases_from_question("What is the name of the red car on the left?")
    ['red car']
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "phrases_from_question",
    "clean_phrases",
    "detector_texts",
    "GENERIC_PHRASE",
    "MAX_QUESTION_CHARS",
    "MAX_WORDS",
    "MAX_WORD_CHARS",
    "MAX_PHRASE_WORDS",
    "MAX_PHRASE_CHARS",
]

#: The phrase returned when a question has no usable content word.
GENERIC_PHRASE = "object"
#: Only this many leading characters of a question are read (bounded time on huge input).
MAX_QUESTION_CHARS = 2000
#: Only this many leading words are considered.
MAX_WORDS = 200
#: Longer words (e.g. an unsegmented Chinese sentence) are cut to this many characters.
MAX_WORD_CHARS = 32
#: A phrase keeps at most its last this-many words.
MAX_PHRASE_WORDS = 4
#: A phrase is never longer than this many characters.
MAX_PHRASE_CHARS = 64

_WORD = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")

_WH = "what which who whom whose when where why how whats whos wheres"
_AUX = (
    "is are was were be been being am do does did done doing has have had having can could "
    "will would shall should may might must isn't aren't wasn't weren't don't doesn't didn't "
    "can't couldn't won't wouldn't it's what's that's"
)
_DET = (
    "the a an this these that those its it their his her my your our some any each every "
    "all both no another other such"
)
_DEICTIC_STRONG = frozenset({"this", "these"})
_PRON = "they them he she him i you we us one ones me something someone anything"
_PREP = (
    "of in on at to from by with for about into onto under over above below near behind "
    "beside besides between inside outside through during after before around across along "
    "against among upon within without via per as like than toward towards beneath"
)
_CONJ = "and or but nor so if then also not there here too very just only"
_IMAGE = (
    "picture pictures image images photo photos photograph shown seen depicted pictured "
    "visible displayed featured shot please tell know identify"
)
_SPATIAL = (
    "left right top bottom middle center centre front back background foreground side "
    "corner upper lower far near"
)
_MEASURE = (
    "tall high big large small old long wide deep far many much heavy often fast "
    "recently originally first last exactly approximately famous popular important "
    "special unique common rare typical usually"
)
_VERBS = (
    "built build builds located locate situated made make makes founded found designed "
    "design designs called call named rename renamed used use uses born established "
    "constructed painted created discovered opened completed produced manufactured live "
    "lives lived grow grows grew eat eats ate belong belongs known come comes came "
    "originate originates originated mean means represent represents refer refers show "
    "shows contain contains consist consists cost costs weigh weighs reach reaches "
    "measure measures flow flows play plays serve serves happen happened feed feeds run "
    "runs hold holds held depict depicts celebrate celebrates dedicated restored destroyed "
    "demolished finished started begin began inaugurated consecrated unveiled launched "
    "introduced released published written invented native endemic related connected "
    "associated based headquartered owned operated maintained managed classified "
    "considered bloom blooms get gets got take takes took see look looks looking holding "
    "wearing carrying sitting standing riding eating playing doing using driving walking "
    "flying"
)
_ANSWER_NOUNS = (
    "name names type types kind kinds sort species genus family breed variety brand make "
    "model color colour colors colours year years date century decade country city town "
    "state region place location material materials height length width size age number "
    "count purpose function origin style title author architect designer creator owner "
    "maker manufacturer population area capital language period era time day month "
    "weight depth diameter elevation altitude distance speed lifespan habitat diet "
    "height meters feet percent"
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FUNCTION_WORDS = _words(
    " ".join((_WH, _AUX, _DET, _PRON, _PREP, _CONJ, _IMAGE, _SPATIAL, _MEASURE, "'s"))
)
_WH_WORDS = _words(_WH)
_VERB_WORDS = _words(_VERBS)
_ANSWER_WORDS = _words(_ANSWER_NOUNS)


def _normalise(question: str) -> str:
    text = unicodedata.normalize("NFKC", question[:MAX_QUESTION_CHARS])
    # Control (Cc), format (Cf), surrogate (Cs), private-use (Co) and unassigned (Cn)
    # characters become spaces so they never glue words together.
    return "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text).lower()


def _tokenise(text: str) -> list[str]:
    words: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0).replace("\u2019", "'")
        possessive = word.endswith("'s")
        if possessive:
            word = word[:-2]
        if word:
            words.append(word[:MAX_WORD_CHARS])
        if possessive:
            words.append("'s")
        if len(words) >= MAX_WORDS:
            break
    return words


def _stop_mask(words: list[str], strict: bool) -> list[bool]:
    """Which words are stop words. In the strict pass, verbs are stops, and an answer-type
    noun is a stop right after a wh-word ("which *country*") or a possessive, or right
    before "of" ("the *name* of"); elsewhere it is content ("this *city*")."""
    mask = []
    for i, word in enumerate(words):
        stop = word in _FUNCTION_WORDS or word.isdigit()
        if strict and not stop:
            prev = words[i - 1] if i > 0 else ""
            nxt = words[i + 1] if i + 1 < len(words) else ""
            stop = word in _VERB_WORDS or (
                word in _ANSWER_WORDS and (prev in _WH_WORDS or prev == "'s" or nxt == "of")
            )
        mask.append(stop)
    return mask


def _runs(words: list[str], strict: bool) -> list[tuple[bool, str]]:
    """Maximal runs of non-stop words as ``(after_strong_deictic, phrase)``."""
    runs: list[tuple[bool, str]] = []
    current: list[str] = []
    deictic = False
    previous = ""

    def flush() -> None:
        if current:
            phrase = " ".join(current[-MAX_PHRASE_WORDS:])[:MAX_PHRASE_CHARS].strip()
            if phrase:
                runs.append((deictic, phrase))
            current.clear()

    for word, stop in zip(words, _stop_mask(words, strict)):
        if stop:
            flush()
        else:
            if not current:
                deictic = previous in _DEICTIC_STRONG
            current.append(word)
        previous = word
    flush()
    return runs


def _rank(runs: list[tuple[bool, str]], limit: int) -> list[str]:
    ordered = [p for d, p in runs if d] + [p for d, p in runs if not d]
    seen: set[str] = set()
    out: list[str] = []
    for phrase in ordered:
        if phrase not in seen:
            seen.add(phrase)
            out.append(phrase)
        if len(out) >= limit:
            break
    return out


def phrases_from_question(question: str, max_phrases: int = 3) -> list[str]:
    """Turn a question into short noun phrases for an open-vocabulary detector.

    See the module docstring for the exact heuristic and its bounds.

    Args:
        question: The user's question (``None`` counts as empty, other non-strings are
            converted with ``str``). Only the first :data:`MAX_QUESTION_CHARS` characters
            are read.
        max_phrases: At most this many phrases are returned (values below 1 count as 1).

    Returns:
        One to ``max(1, max_phrases)`` distinct, non-empty, lower-case phrases of at most
        :data:`MAX_PHRASE_CHARS` characters, most likely subject first; ``["object"]``
        when the question has no usable word (including an empty question).

    Examples:
        >>> phrases_from_question("Which country is this building located in?")
        ['building']
        >>> phrases_from_question("")
        ['object']
    """
    try:
        limit = max(1, int(max_phrases))
    except (TypeError, ValueError, OverflowError):
        limit = 1
    try:
        text = "" if question is None else str(question)
        words = _tokenise(_normalise(text))
        phrases = _rank(_runs(words, strict=True), limit)
        if not phrases:
            phrases = _rank(_runs(words, strict=False), limit)
    except Exception:  # a heuristic must never take down the pipeline
        phrases = []
    return phrases or [GENERIC_PHRASE]


def clean_phrases(raw: object, max_phrases: int = 3) -> list[str]:
    """Normalise phrases from a user's ``query_fn``: a single string counts as one phrase,
    non-strings are dropped, control characters become spaces, whitespace is collapsed,
    each phrase is cut to ``2 * MAX_PHRASE_CHARS`` characters, empty ones and duplicates
    are dropped, and at most ``max(1, max_phrases)`` are kept. May return ``[]``.

    Example:
        >>> clean_phrases(["  red   car ", "", "red car", 3, "dog"])
        ['red car', 'dog']
    """
    if isinstance(raw, str):
        items: list[object] = [raw]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        items = []
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            continue
        text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in item[:1000])
        phrase = " ".join(text.split())[: 2 * MAX_PHRASE_CHARS].strip()
        if phrase and phrase not in out:
            out.append(phrase)
    return out[: max(1, max_phrases)]


def detector_texts(
    phrase_lists: list[list[str]], family: str, template: str = "{}"
) -> list[str] | list[list[str]]:
    """The text input of a detector ``family`` for a batch of images, one phrase list each.

    Each phrase is wrapped in ``template``. Grounding DINO takes one lower-case string per
    image, ``"phrase one. phrase two."`` (dots inside phrases become spaces). OWL models
    take one list of queries per image, all of the same length: the processor would pad
    shorter lists with ``" "`` queries whose logits compete in the max over classes, so
    each list is padded by repeating its own phrases (label ``i`` then means phrase
    ``i % len(phrases)``).

    Example:
        >>> detector_texts([["red car", "st. paul"]], "grounding-dino")
        ['red car. st paul.']
        >>> detector_texts([["a"], ["b", "c"]], "owlv2", "a photo of a {}")
        [['a photo of a a', 'a photo of a a'], ['a photo of a b', 'a photo of a c']]
    """
    if family == "grounding-dino":
        out = []
        for phrases in phrase_lists:
            parts = [" ".join(template.format(p).replace(".", " ").split()) for p in phrases]
            parts = [p.lower() for p in parts if p] or [GENERIC_PHRASE]
            out.append(". ".join(parts) + ".")
        return out
    n = max(len(p) for p in phrase_lists)
    return [[template.format(p) for p in (phrases * n)[:n]] for phrases in phrase_lists]
