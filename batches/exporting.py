"""An NDJSON byte stream -> gzip batch files, each at most N compressed bytes, hashed (MD5) and
sized while they are written. Pure: no Django, no database; the caller supplies the bytes and
the files.

The input is a stream of chunks whose concatenation is the NDJSON text (complete lines, each
ending in "\\n"; chunk boundaries anywhere, even inside a line). The build gets those chunks
straight from PostgreSQL (`COPY ... TO STDOUT`), so no Python work is done per record: whole
runs of lines go to the compressor at once, and lines are only looked at one by one near the
end of a file, to cut it between two lines.

How a file stays under the limit without ever exceeding it (cdp-batch-api.md section 1.6: a
gzipped file may be at most 50 MB) while ending up nearly full:

- The compressed size is only known exactly after a flush: a deflate stream holds input back.
  So we keep `written` (compressed bytes that came out so far, exact) and `pending` (raw bytes
  fed since the last explicit flush; some of them already came out, so this over-counts).
- Deflate never grows data by more than a few bytes per stored block, so `_bound(n)` is a
  safe upper bound of what n raw bytes can add, including the final block and the 8-byte gzip
  trailer. While `written + _bound(pending + block)` stays under the limit, a block of lines
  is simply fed: the file cannot overflow whatever the compressor does.
- When the next block would break that bound, we go line by line; when a line would break it,
  we flush (Z_SYNC_FLUSH: all input comes out, the dictionary is kept, so the ratio hardly
  suffers), which makes `written` exact and `pending` zero, and test again. Only when even an
  exact size leaves no room for the line do we finish the file and start the next. Each flush
  cuts the remaining room by about 1/ratio, so a 50 MB file sees a few dozen flushes, and it
  ends within one line's bound of the limit: > 99.9 % full for real records (the ">= 98 %
  full" target of DESIGN.md section 6).

MD5 and size are computed over the compressed bytes as they are written (never by reading the
file back). The compressor writes a fixed gzip header (no name, mtime 0), so the same lines
always give the same bytes and checksum.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from isal import isal_zlib

# gzip trailer (CRC32 + ISIZE), the final deflate block and a block header's worth of slack.
FINISH_BYTES = 256
# The fixed gzip header the compressor writes first.
GZIP_HEADER_BYTES = 10
CODECS = ("isal", "zlib")


class ExportError(Exception):
    """The lines cannot be exported as asked (a line larger than a file, a broken stream)."""


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self, mode: int = ..., /) -> bytes: ...


def compressor_factory(codec: str, level: int) -> Callable[[], _Compressor]:
    """A factory of gzip-wrapped deflate compressors for `codec` ("isal" or "zlib")."""
    if codec == "isal":
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
    """One finished file: what the approver sees and the uploader declares.

    `first_line` / `last_line` number the file's records within the whole stream (1-based), so
    the caller can tell which records went into which file.
    """

    index: int
    md5: str
    size: int
    records: int
    raw_bytes: int
    first_line: int
    last_line: int


class _PartWriter:
    """Feeds one file: compresses, hashes and counts what it writes."""

    def __init__(
        self, index: int, fileobj: BinaryIO, compressor: _Compressor, first_line: int
    ) -> None:
        self.index = index
        self.fileobj = fileobj
        self.compressor = compressor
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.written = 0
        self.records = 0
        self.raw_bytes = 0
        self.first_line = first_line

    def _out(self, data: bytes) -> None:
        if data:
            self.md5.update(data)
            self.fileobj.write(data)
            self.written += len(data)

    def feed(self, data: bytes, lines: int) -> None:
        self._out(self.compressor.compress(data))
        self.records += lines
        self.raw_bytes += len(data)

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
            first_line=self.first_line,
            last_line=self.first_line + self.records - 1,
        )


def export_gzip_parts(
    chunks: Iterable[bytes],
    *,
    open_part: Callable[[int], BinaryIO],
    max_bytes: int,
    codec: str = "isal",
    level: int = 2,
    on_lines: Callable[[int], None] | None = None,
    max_records: int | None = None,
) -> Iterator[tuple[ExportedPart, BinaryIO]]:
    """Write the NDJSON stream `chunks` into gzip files of at most `max_bytes` compressed
    (and at most `max_records` lines each, when given).

    `open_part(index)` returns a writable binary file for part `index` (1-based). Each finished
    part is yielded with its file object (flushed, not closed) before the next is opened, so the
    caller can store it and free the space. `on_lines(total)` is called after each chunk with
    the number of complete lines read so far (progress). Memory is a chunk or two plus the
    compressor's state, whatever the stream's length.
    """
    if max_bytes < 1024:
        raise ValueError("The file size limit must be at least 1024 bytes.")
    new_compressor = compressor_factory(codec, level)
    # Counting the header here and again in `written` once it is out errs on the safe side.
    limit = max_bytes - GZIP_HEADER_BYTES

    part: _PartWriter | None = None
    pending = 0  # raw bytes fed since the last explicit flush
    carry = b""  # an incomplete last line, waiting for the rest
    lines_done = 0

    if max_records is not None and max_records < 1:
        raise ValueError("A file must be allowed at least one record.")

    def fits(size: int, lines: int) -> bool:
        if max_records is not None and part.records + lines > max_records:
            return False
        return part.written + _bound(pending + size) <= limit

    for chunk in chunks:
        data = carry + chunk if carry else chunk
        end = data.rfind(b"\n") + 1
        carry = data[end:]
        if not end:
            continue
        block = data[:end] if end < len(data) else data
        count = block.count(b"\n")
        if part is None:
            part = _PartWriter(1, open_part(1), new_compressor(), first_line=1)
        if fits(len(block), count):
            # The common case: the whole run of lines fits as it is.
            part.feed(block, count)
            pending += len(block)
        else:
            # Near the end of a file: line by line.
            number = lines_done  # lines written before this one
            start = 0
            while start < end:
                stop = block.index(b"\n", start) + 1
                size = stop - start
                if not fits(size, 1):
                    part.sync()
                    pending = 0
                    if not fits(size, 1) and part.records:
                        yield part.finish(), part.fileobj
                        part = _PartWriter(
                            part.index + 1,
                            open_part(part.index + 1),
                            new_compressor(),
                            first_line=number + 1,
                        )
                    if not fits(size, 1):
                        raise ExportError(
                            f"Line {number + 1} is {size} bytes long, too large for a file of "
                            f"at most {max_bytes} bytes."
                        )
                part.feed(block[start:stop], 1)
                pending += size
                number += 1
                start = stop
        lines_done += count
        if on_lines is not None:
            on_lines(lines_done)

    if carry:
        raise ExportError("The stream ended in the middle of a line (no final newline).")
    if part is not None:
        yield part.finish(), part.fileobj
