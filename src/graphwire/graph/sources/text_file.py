"""Reading a source file as UTF-8 text, every failure a :class:`SourceError`."""

from __future__ import annotations

import os

from .errors import SourceError


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file; a missing or unreadable file is a :class:`SourceError`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SourceError(path, "no such file") from None
    except IsADirectoryError:
        raise SourceError(path, "is a folder, not a file") from None
    except OSError as e:
        raise SourceError(path, f"cannot be read ({e.strerror or e})") from None


def decode_utf8(path: str | os.PathLike[str], data: bytes) -> str:
    """UTF-8 (a leading byte-order mark is dropped), line endings made ``\\n``.

    Invalid UTF-8 is a :class:`SourceError` naming the line of the first bad byte.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SourceError(
            path, f"not valid UTF-8 (byte 0x{data[e.start]:02x})", line, column
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_text(path: str | os.PathLike[str]) -> str:
    """A whole file as text (see :func:`read_bytes` and :func:`decode_utf8`)."""
    return decode_utf8(path, read_bytes(path))
