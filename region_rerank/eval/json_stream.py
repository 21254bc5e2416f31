"""Streaming readers for the big JSON files of the benchmarks (bounded memory).

- :func:`iter_json_object` yields the ``(key, value)`` members of a file that holds one
  JSON object (the E-VQA KB, ~2M entries; pool files of EchoSight / OMGM) one at a time.
  It decodes with the standard library's C scanner (``json.JSONDecoder.raw_decode``) over a
  sliding text buffer, so memory holds one member plus one read chunk, never the file.
- :func:`iter_jsonl` yields the parsed lines of a JSON Lines file (Wiki6M, InfoSeek).

Both read ``.gz`` files transparently (detected by their magic bytes) and can show a tqdm
progress bar over the bytes read (see :func:`region_rerank.progress.progress_bar`).
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from region_rerank.errors import DatasetFormatError


class RowProblem(ValueError):
    """A problem in one row; the loader adds the file and line (re-exported by ``_rows``)."""


__all__ = ["RowProblem", "iter_json_object", "iter_jsonl", "open_binary", "is_gzip"]

_WS = " \t\n\r"
_CHUNK = 1 << 20  # characters per read
#: Largest member decoded before giving up (an invalid file must not be read whole).
MAX_MEMBER_CHARS = 1 << 28


def is_gzip(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


class _Progress:
    """Updates a progress bar to the number of (compressed) bytes read so far."""

    def __init__(self, raw: IO[bytes], path: Path, enabled: bool, desc: str) -> None:
        self.raw = raw
        self.done = 0
        self.bar: Any = None
        if enabled:
            from region_rerank.progress import progress_bar

            self.bar = progress_bar(path.stat().st_size, desc, True, unit="B")
            self.bar.unit_scale = True

    def update(self) -> None:
        if self.bar is not None:
            pos = self.raw.tell()
            self.bar.update(pos - self.done)
            self.done = pos

    def close(self) -> None:
        if self.bar is not None:
            self.update()
            self.bar.close()


@contextmanager
def open_binary(
    path: str | os.PathLike[str], *, progress: bool = False, desc: str | None = None
) -> Iterator[tuple[IO[bytes], _Progress]]:
    """Open ``path`` for binary reading, decompressing gzip; also return its progress."""
    p = Path(path)
    raw = open(p, "rb")  # noqa: SIM115 - closed below
    try:
        stream: IO[bytes] = raw
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        else:
            raw.seek(0)
        bar = _Progress(raw, p, progress, desc or p.name)
        try:
            yield stream, bar
        finally:
            bar.close()
    finally:
        raw.close()


def _error(path: Path, text_before: int, buf: str, pos: int, msg: str) -> DatasetFormatError:
    line = text_before + buf.count("\n", 0, pos) + 1
    return DatasetFormatError(path, line, msg)


class _ObjectReader:
    """A sliding-window reader of the members of one top-level JSON object."""

    def __init__(self, text: IO[str], path: Path, bar: _Progress, chunk: int) -> None:
        self.text = text
        self.path = path
        self.bar = bar
        self.chunk = chunk
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.lines_before = 0  # newlines in the text already dropped from the buffer
        self.decoder = json.JSONDecoder()

    def _read(self, n: int) -> None:
        if self.pos > self.chunk:  # drop what was consumed
            self.lines_before += self.buf.count("\n", 0, self.pos)
            self.buf = self.buf[self.pos :]
            self.pos = 0
        try:
            data = self.text.read(n)
        except UnicodeDecodeError as exc:
            raise DatasetFormatError(self.path, None, f"not valid UTF-8 ({exc.reason})") from None
        except (OSError, EOFError) as exc:  # e.g. a truncated .gz
            raise DatasetFormatError(self.path, None, f"cannot read ({exc})") from None
        self.bar.update()
        if not data:
            self.eof = True
        self.buf += data

    def fail(self, msg: str) -> DatasetFormatError:
        return _error(self.path, self.lines_before, self.buf, self.pos, msg)

    def skip_ws(self) -> str:
        """Skip whitespace; return the next character ('' at the end of the file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self._read(self.chunk)

    def expect(self, chars: str, what: str) -> str:
        c = self.skip_ws()
        if not c or c not in chars:
            found = repr(c) if c else "the end of the file"
            raise self.fail(f"invalid JSON (expected {what}, found {found})")
        self.pos += 1
        return c

    def value(self) -> Any:
        """Decode the JSON value at the cursor, reading more text until it is complete."""
        want = self.chunk
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                too_long = len(self.buf) - self.pos > MAX_MEMBER_CHARS
                if self.eof or too_long:
                    self.pos = exc.pos
                    extra = f", or a value over {MAX_MEMBER_CHARS} characters" if too_long else ""
                    raise self.fail(f"invalid JSON ({exc.msg}){extra}") from None
                self._read(want)
                want *= 2  # a long member: grow the reads so retries stay linear
                continue
            if end == len(self.buf) and not self.eof:  # a number may continue
                self._read(want)
                continue
            self.pos = end
            return value


def iter_json_object(
    path: str | os.PathLike[str],
    *,
    progress: bool = False,
    desc: str | None = None,
    chunk_chars: int = _CHUNK,
) -> Iterator[tuple[str, Any]]:
    """Yield the ``(key, value)`` members of a file holding one JSON object, in file order.

    Args:
        path: A JSON file (or ``.gz``) whose top level is an object.
        progress: Show a progress bar over the bytes read.
        desc: Progress bar label (default: the file name).
        chunk_chars: Characters read at a time.

    Raises:
        DatasetFormatError: Invalid JSON (with the line of the error; in a one-line file that
            is line 1), invalid UTF-8, or a top level that is not an object.
    """
    p = Path(path)
    with open_binary(p, progress=progress, desc=desc) as (stream, bar):
        text = io.TextIOWrapper(stream, encoding="utf-8")
        reader = _ObjectReader(text, p, bar, chunk_chars)
        c = reader.skip_ws()
        if c != "{":
            kind = "an empty file" if not c else f"{c!r}"
            raise reader.fail(f"the file must hold one JSON object, found {kind}")
        reader.pos += 1
        if reader.skip_ws() == "}":
            reader.pos += 1
        else:
            while True:
                if reader.skip_ws() != '"':
                    raise reader.fail("invalid JSON (expected a string key)")
                key = reader.value()
                reader.expect(":", "':'")
                reader.skip_ws()
                yield key, reader.value()
                if reader.expect(",}", "',' or '}'") == "}":
                    break
        if reader.skip_ws():
            raise reader.fail("invalid JSON (extra data after the object)")


def iter_jsonl(
    path: str | os.PathLike[str], *, progress: bool = False, desc: str | None = None
) -> Iterator[tuple[int, Any | RowProblem]]:
    """Yield ``(line number, parsed value or RowProblem)`` for each non-blank line of a JSON
    Lines file (plain or ``.gz``)."""
    p = Path(path)
    with open_binary(p, progress=progress, desc=desc) as (stream, bar):
        try:
            for line_no, raw in enumerate(stream, start=1):
                if line_no % 4096 == 0:
                    bar.update()
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield line_no, RowProblem(f"not valid UTF-8 ({exc.reason})")
                    continue
                if not text.strip():
                    continue
                try:
                    yield line_no, json.loads(text)
                except json.JSONDecodeError as exc:
                    yield line_no, RowProblem(f"invalid JSON ({exc.msg} at column {exc.colno})")
        except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
            raise DatasetFormatError(p, None, f"cannot read ({exc})") from None
