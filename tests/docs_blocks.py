"""Read the fenced code blocks of the README and of the docs site's pages.

A Python block may be preceded by ``<!-- docs-test: NAME[,NAME] -->``: the names of the
setups (in ``tests/test_docs_code.py``) that provide what the page says the reader already
has (a configured LlamaIndex ``Settings``, a LangChain vector store, a trained adapter).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*docs-test:\s*([\w,\- ]+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its setups."""

    page: str
    line: int
    lang: str
    code: str
    setups: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """The README and every Markdown page of the docs site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` (unterminated fences are an error)."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        mark = _MARK.match(lines[i - 1]) if i else None
        setups = tuple(s.strip() for s in mark.group(1).split(",")) if mark else ()
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: unterminated code fence")
        rel = str(path.relative_to(ROOT))
        out.append(Block(rel, start + 1, lang, "\n".join(body) + "\n", setups))
        i += 1
    return out


def command_lines(code: str) -> list[list[str]]:
    """The ``region-rerank`` invocations of a shell block, as argument lists (after the
    program name; ``python -m region_rerank.cli`` and ``accelerate launch ... -m
    region_rerank.cli`` count too)."""
    joined = code.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        for j, word in enumerate(words):
            if word == "region-rerank" or (
                word == "region_rerank.cli" and j and words[j - 1] == "-m"
            ):
                out.append(words[j + 1 :])
                break
    return out
