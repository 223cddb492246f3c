"""Open the log files one line at a time: plain, rotated (.1) or gzipped (by magic bytes)."""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Iterator

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"


class InputError(Exception):
    """A file that cannot be read: one line on stderr, exit 2."""


def read_lines(name: str) -> Iterator[str]:
    """The lines of one input, decoded leniently (a stray byte must not stop a 1 GB log)."""
    try:
        raw = sys.stdin.buffer if name == STDIN else open(name, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
        # peek() never consumes: the gzip reader (or the text reader) starts at byte 0.
        binary = gzip.GzipFile(fileobj=buffered) if buffered.peek(2)[:2] == GZIP_MAGIC else buffered
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline=None)
        try:
            yield from text
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise InputError(f"{_label(name)} is not a readable gzip file: {exc}") from None
        except OSError as exc:
            raise InputError(f"cannot read {_label(name)}: {exc.strerror or exc}") from None
    finally:
        if name != STDIN:
            raw.close()


def _label(name: str) -> str:
    return "stdin" if name == STDIN else name
