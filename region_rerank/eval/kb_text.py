"""How a KB entry's text is assembled from its title and sections.

The default follows the Region-R1 reference code (taco-group/Region-R1,
``src/prepare_data.py``): the title, a newline, the first three ``section_texts`` joined by
newlines, the whole cut at 500 characters::

    (title + "\\n" + "\\n".join(section_texts[:3]))[:500]

Empty sections are kept (so a run of newlines can appear) and the cut may fall inside a
word, exactly as there. :class:`KBTextConfig` switches each of these choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from region_rerank._validate import check_int

__all__ = ["KBTextConfig", "entry_text", "REFERENCE_TEXT"]


@dataclass(frozen=True)
class KBTextConfig:
    """How to build an entry's text.

    Attributes:
        max_sections: Sections used after the title (``None``: all).
        max_chars: Cut of the whole text (``None``: no cut).
        skip_empty: Leave out empty / whitespace-only sections and strip each part.
        word_boundary: Cut back to the last space or newline when one is within the last
            20% of ``max_chars`` (the cut is otherwise exact).
    """

    max_sections: int | None = 3
    max_chars: int | None = 500
    skip_empty: bool = False
    word_boundary: bool = False

    def __post_init__(self) -> None:
        if self.max_sections is not None:
            check_int("max_sections", self.max_sections, 0)
        if self.max_chars is not None:
            check_int("max_chars", self.max_chars, 1)


#: The reference assembly (title + first three sections, cut at 500 characters).
REFERENCE_TEXT = KBTextConfig()


def _cut(text: str, config: KBTextConfig) -> str:
    limit = config.max_chars
    if limit is None or len(text) <= limit:
        return text
    cut = text[:limit]
    if config.word_boundary:
        space = max(cut.rfind(" "), cut.rfind("\n"))
        if space >= int(limit * 0.8):
            cut = cut[:space].rstrip()
    return cut


def entry_text(title: str, sections: Sequence[str], config: KBTextConfig = REFERENCE_TEXT) -> str:
    """The text of one entry from its title and section texts (see the module docstring).

    Args:
        title: The entry title.
        sections: Its section texts, in order (for Wiki6M: the one ``wikipedia_content``).
        config: What to keep and where to cut.
    """
    if config.skip_empty:
        parts = [p.strip() for p in sections if p and p.strip()]
    else:
        parts = list(sections)
    if config.max_sections is not None:
        parts = parts[: config.max_sections]
    if config.skip_empty:  # no dangling newline when nothing follows the title
        return _cut("\n".join([title.strip(), *parts]), config)
    return _cut(title + "\n" + "\n".join(parts), config)
