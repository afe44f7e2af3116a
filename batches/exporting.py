"""Rows -> gzip NDJSON batch files, each at most N compressed bytes, hashed (MD5) and sized while
they are written. Pure: no Django, no database; the caller supplies the rows and the files.

How a file stays under the limit without ever exceeding it (cdp-batch-api.md section 1.6: a
gzipped file may be at most 50 MB) while ending up nearly full:

- The compressed size is only known exactly after a flush: a deflate stream holds input back.
  So we keep `written` (compressed bytes that came out so far, exact) and `pending` (raw bytes
  fed since the last explicit flush; some of them already came out, so this over-counts).
- Deflate never grows data by more than a few bytes per stored block, so `_bound(n)` is a
  safe upper bound of what n raw bytes can add, including the final block and the 8-byte gzip
  trailer. While `written + _bound(pending + line)` stays under the limit, a line is simply
  appended: the file cannot overflow whatever the compressor does.
- When the next line would break that bound, we flush (Z_SYNC_FLUSH: all input comes out, the
  dictionary is kept, so the ratio hardly suffers), which makes `written` exact and `pending`
  zero, and test again. Only when even an exact size leaves no room for the line do we finish
  the file and start the next. Each flush cuts the remaining room by about 1/ratio, so a 50 MB
  file sees a few dozen flushes, and it ends within one line's bound of the limit: > 99.9 % full
  for real records (the ">= 98 % full" target of DESIGN.md section 6).

MD5 and size are computed over the compressed bytes as they are written (never by reading the
file back). The compressor writes a fixed gzip header (no name, mtime 0), so the same rows
always give the same bytes and checksum.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

# Python-side buffer of raw lines before they go to the compressor (fewer, larger calls).
BUFFER_BYTES = 256 * 1024
# gzip trailer (CRC32 + ISIZE), the final deflate block and a block header's worth of slack.
FINISH_BYTES = 256
# The fixed gzip header the compressor writes first.
GZIP_HEADER_BYTES = 10
CODECS = ("isal", "zlib")


class ExportError(Exception):
    """The rows cannot be exported as asked (a record larger than a file, a duplicate identity)."""


class DuplicateIdentityError(ExportError):
    """Two records with the same identity would have gone into one file."""


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self, mode: int = ..., /) -> bytes: ...


def compressor_factory(codec: str, level: int) -> Callable[[], _Compressor]:
    """A factory of gzip-wrapped deflate compressors for `codec` ("isal" or "zlib")."""
    if codec == "isal":
        from isal import isal_zlib

        # isal's level 0 is not "stored": it can expand incompressible input many times.
        if not 1 <= level <= 3:
            raise ValueError("The isal codec takes CDP_GZIP_LEVEL 1 to 3.")
        # wbits 31 = 16 + 15: a gzip wrapper around a 32 KB-window deflate stream.
        return lambda: isal_zlib.compressobj(level, isal_zlib.DEFLATED, 31)
    if codec == "zlib":
        if not 0 <= level <= 9:
            raise ValueError("The zlib codec takes CDP_GZIP_LEVEL 0 to 9.")
        return lambda: zlib.compressobj(level, zlib.DEFLATED, 31)
    raise ValueError(f"CDP_GZIP_CODEC must be one of: {', '.join(CODECS)}.")


def _bound(raw: int) -> int:
    """Most compressed bytes `raw` more input can add, final block and trailer included.

    Measured on random (incompressible) input of 1 B to 3 MB after a sync flush: zlib levels
    0-9 add at most 928 bytes per 3 MB (stored blocks: 5 bytes per 16 KiB), isal levels 1-3
    at most 987; tests/batches/test_exporting.py keeps checking it. 1/1024 is three times that.
    """
    return raw + (raw >> 10) + FINISH_BYTES


@dataclass(frozen=True)
class ExportedPart:
    """One finished file: what the approver sees and the uploader declares."""

    index: int
    md5: str
    size: int
    records: int
    raw_bytes: int
    first_key: int
    last_key: int


class _PartWriter:
    """Feeds one file: compresses, hashes and counts what it writes."""

    def __init__(self, index: int, fileobj: BinaryIO, compressor: _Compressor) -> None:
        self.index = index
        self.fileobj = fileobj
        self.compressor = compressor
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.written = 0
        self.records = 0
        self.raw_bytes = 0
        self.first_key = 0
        self.last_key = 0

    def _out(self, data: bytes) -> None:
        if data:
            self.md5.update(data)
            self.fileobj.write(data)
            self.written += len(data)

    def feed(self, data: bytes) -> None:
        self._out(self.compressor.compress(data))

    def sync(self) -> None:
        self._out(self.compressor.flush(zlib.Z_SYNC_FLUSH))

    def finish(self) -> ExportedPart:
        self._out(self.compressor.flush(zlib.Z_FINISH))
        self.fileobj.flush()
        return ExportedPart(
            index=self.index,
            md5=self.md5.hexdigest(),
            size=self.written,
            records=self.records,
            raw_bytes=self.raw_bytes,
            first_key=self.first_key,
            last_key=self.last_key,
        )


def export_gzip_parts(
    rows: Iterable[tuple[int, bytes, bytes | str | None]],
    *,
    open_part: Callable[[int], BinaryIO],
    max_bytes: int,
    codec: str = "isal",
    level: int = 2,
) -> Iterator[tuple[ExportedPart, BinaryIO]]:
    """Write `rows` into as many gzip files as needed, each at most `max_bytes` compressed.

    `rows` yields `(key, line, identity)`: an increasing integer key (the record id), the line's
    bytes (one minified JSON document ending in b"\\n"), and the record's identity, or None when
    the schema has none. `open_part(index)` returns a writable binary file for part `index`
    (1-based). Each finished part is yielded with its file object (flushed, not closed) before
    the next is opened, so the caller can store it and free the space.

    Two records with the same identity never share a file (cdp-batch-api.md section 2: duplicate
    guests create duplicate profiles): the staged guests' identity key is unique in PostgreSQL,
    so this is a cross-check. It keeps a set of 64-bit hashes per file, about 70 bytes a record;
    a 50 MB file of typical guests (~950 bytes of JSON each, ~240,000 per file) needs ~17 MB.
    """
    if max_bytes < 1024:
        raise ValueError("The file size limit must be at least 1024 bytes.")
    new_compressor = compressor_factory(codec, level)
    # Counting the header here and again in `written` once it is out errs on the safe side.
    limit = max_bytes - GZIP_HEADER_BYTES

    part: _PartWriter | None = None
    pending = 0  # raw bytes fed or buffered since the last explicit flush
    buffered: list[bytes] = []
    buffered_bytes = 0
    seen: set[int] = set()

    for key, line, identity in rows:
        size = len(line)
        if part is None:
            part = _PartWriter(1, open_part(1), new_compressor())
        elif part.written + _bound(pending + size) > limit:
            # Learn the exact size, then decide whether the line still fits.
            if buffered:
                part.feed(b"".join(buffered))
                buffered, buffered_bytes = [], 0
            part.sync()
            pending = 0
            if part.written + _bound(size) > limit:
                yield part.finish(), part.fileobj
                part = _PartWriter(part.index + 1, open_part(part.index + 1), new_compressor())
                seen.clear()
        if part.records == 0:
            if _bound(size) > limit:
                raise ExportError(
                    f"Record {key} is {size} bytes long, too large for a file of at most "
                    f"{max_bytes} bytes."
                )
            part.first_key = key
        if identity is not None:
            fingerprint = hash(identity)
            if fingerprint in seen:
                raise DuplicateIdentityError(
                    f"Record {key} has the same identity as another record of file "
                    f"{part.index}; CDP would create duplicate profiles."
                )
            seen.add(fingerprint)
        buffered.append(line)
        buffered_bytes += size
        pending += size
        part.records += 1
        part.raw_bytes += size
        part.last_key = key
        if buffered_bytes >= BUFFER_BYTES:
            part.feed(b"".join(buffered))
            buffered, buffered_bytes = [], 0

    if part is not None:
        if buffered:
            part.feed(b"".join(buffered))
        yield part.finish(), part.fileobj
