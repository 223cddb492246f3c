"""Open the log files: plain, rotated (.1) or gzipped (by magic bytes), read in large chunks.

The hot path reads 1 MiB of bytes at a time and decodes it in one call, then splits it into
lines in one call (str.split, in C): a text file iterated line by line costs a Python-level
step per line before any line is even looked at, and most lines of a mail log are skipped.
"""

from __future__ import annotations

import codecs
import gzip
import io
import sys
import zlib
from collections.abc import Iterator

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20  # bytes per read: large enough that per-chunk costs vanish, small enough to stay flat in memory


class InputError(Exception):
    """A file that cannot be read: one line on stderr, exit 2."""


def read_chunks(name: str, size: int = CHUNK) -> Iterator[str]:
    """The text of one input, about `size` bytes at a time, decoded leniently (a stray byte must
    not stop a 1 GB log) and with "\\r\\n" and "\\r" read as "\\n", exactly as a text file opened
    with newline=None: the same incremental decoders io.TextIOWrapper uses, so a character or a
    "\\r\\n" cut by a chunk boundary is still read whole."""
    try:
        raw = sys.stdin.buffer if name == STDIN else open(name, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
        # peek() never consumes: the gzip reader (or the plain one) starts at byte 0.
        binary = gzip.GzipFile(fileobj=buffered) if buffered.peek(2)[:2] == GZIP_MAGIC else buffered
        decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")(errors="replace"),
                                               translate=True)
        try:
            while block := binary.read(size):
                if text := decoder.decode(block):
                    yield text
            if text := decoder.decode(b"", final=True):
                yield text
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise InputError(f"{_label(name)} is not a readable gzip file: {exc}") from None
        except OSError as exc:
            raise InputError(f"cannot read {_label(name)}: {exc.strerror or exc}") from None
    finally:
        if name != STDIN:
            raw.close()


def read_line_batches(name: str, size: int = CHUNK) -> Iterator[list[str]]:
    """The lines of one input without their "\\n", a chunk's worth per list (the last line of
    the input counts even without a final newline, as when a text file is iterated)."""
    tail = ""
    for chunk in read_chunks(name, size):
        lines = (tail + chunk).split("\n")
        tail = lines.pop()  # the line the next chunk ends ("" when this one ended a line)
        if lines:
            yield lines
    if tail:
        yield [tail]


def read_lines(name: str) -> Iterator[str]:
    """The lines of one input one at a time, each with its "\\n" but the last one's when the input
    does not end with one: what iterating a text file gives."""
    tail = ""
    for chunk in read_chunks(name):
        lines = (tail + chunk).split("\n")
        tail = lines.pop()
        for line in lines:
            yield line + "\n"
    if tail:
        yield tail


def _label(name: str) -> str:
    return "stdin" if name == STDIN else name
