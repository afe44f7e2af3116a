"""batches.exporting: split at the limit (never over, nearly full), MD5/size of what was
written, duplicate identities, flat memory. Pure: no database."""

import gzip
import hashlib
import io
import os
import random
import tracemalloc
import zlib

import pytest

from batches.exporting import (
    DuplicateIdentityError,
    ExportError,
    _bound,
    compressor_factory,
    export_gzip_parts,
)


def _line(n: int, *, pad: int = 0) -> bytes:
    rnd = random.Random(n)
    value = (
        f'{{"email":"guest{n}@example.com","points":{rnd.randint(0, 10**9)},'
        f'"note":"{rnd.randbytes(pad).hex() if pad else ""}"}}'
    )
    return (
        f'{{"ref":"00000000-0000-4000-8000-{n:012d}","schema":"guest","mode":"upsert",'
        f'"value":{value}}}\n'
    ).encode()


def _rows(count: int, *, pad: int = 0, identities: bool = True):
    for n in range(1, count + 1):
        yield n, _line(n, pad=pad), (f"email:guest{n}@example.com" if identities else None)


def _export(rows, **kw):
    files: list[io.BytesIO] = []

    def open_part(index: int) -> io.BytesIO:
        assert index == len(files) + 1
        files.append(io.BytesIO())
        return files[-1]

    parts = [part for part, _ in export_gzip_parts(rows, open_part=open_part, **kw)]
    return parts, [f.getvalue() for f in files]


@pytest.mark.parametrize(("codec", "level"), [("isal", 2), ("zlib", 6), ("isal", 1)])
def test_export_gzip_parts_split_at_limit_never_over_and_nearly_full(codec, level):
    limit = 60_000
    parts, blobs = _export(_rows(3000, pad=40), max_bytes=limit, codec=codec, level=level)

    assert len(parts) > 3
    for part, blob in zip(parts, blobs, strict=True):
        assert len(blob) == part.size <= limit
        assert hashlib.md5(blob).hexdigest() == part.md5
    # Every file but the last is at least 98 % full (lines are ~150 bytes here).
    assert all(part.size >= 0.98 * limit for part in parts[:-1])
    # Decompressed, the files hold every line once, in order, split between whole lines.
    lines = b"".join(gzip.decompress(blob) for blob in blobs).splitlines(keepends=True)
    assert lines == [_line(n, pad=40) for n in range(1, 3001)]
    assert [p.records for p in parts] == [len(gzip.decompress(b).splitlines()) for b in blobs]
    assert parts[0].first_key == 1
    assert parts[-1].last_key == 3000
    assert all(a.last_key + 1 == b.first_key for a, b in zip(parts, parts[1:], strict=False))


def test_export_gzip_parts_incompressible_lines_stay_under_limit():
    # Random hex barely compresses: the size bound, not the ratio, must keep files legal.
    limit = 20_000
    parts, blobs = _export(_rows(400, pad=300), max_bytes=limit)
    assert len(parts) >= 6
    assert all(len(blob) <= limit for blob in blobs)
    assert all(part.size >= 0.9 * limit for part in parts[:-1])


def test_export_gzip_parts_writes_plain_utf8_ndjson_without_bom():
    rows = [(1, '{"ref":"r","value":{"city":"Dún Laoghaire"}}\n'.encode(), None)]
    _, blobs = _export(rows, max_bytes=10_000)
    text = gzip.decompress(blobs[0])
    assert not text.startswith(b"\xef\xbb\xbf")
    assert text.decode("utf-8") == '{"ref":"r","value":{"city":"Dún Laoghaire"}}\n'


def test_export_gzip_parts_same_rows_give_same_checksum():
    first, _ = _export(_rows(500), max_bytes=50_000)
    second, _ = _export(_rows(500), max_bytes=50_000)
    assert [p.md5 for p in first] == [p.md5 for p in second]


def test_export_gzip_parts_refuses_duplicate_identity_in_one_file():
    rows = [
        (1, _line(1), "email:same@example.com"),
        (2, _line(2), "email:other@example.com"),
        (3, _line(3), "email:same@example.com"),
    ]
    with pytest.raises(DuplicateIdentityError, match="Record 3"):
        _export(rows, max_bytes=50_000)


def test_export_gzip_parts_same_identity_in_different_files_is_allowed():
    # The check is per file: after a split the set starts again.
    rows = [
        (n, _line(n, pad=200), "email:same@example.com" if n in (1, 40) else str(n))
        for n in range(1, 41)
    ]
    parts, _ = _export(rows, max_bytes=5_000)
    first_file = next(p for p in parts if p.first_key <= 1 <= p.last_key)
    assert not (first_file.first_key <= 40 <= first_file.last_key)


def test_export_gzip_parts_record_larger_than_a_file_is_an_error():
    rows = [(7, b"x" * 5000 + b"\n", None)]
    with pytest.raises(ExportError, match="Record 7"):
        _export(rows, max_bytes=2_000)


def test_export_gzip_parts_no_rows_no_files():
    parts, blobs = _export(iter(()), max_bytes=10_000)
    assert parts == []
    assert blobs == []


def test_compressor_factory_refuses_unknown_codec_and_bad_levels():
    with pytest.raises(ValueError, match="CDP_GZIP_CODEC"):
        compressor_factory("brotli", 2)
    with pytest.raises(ValueError, match="1 to 3"):
        compressor_factory("isal", 0)
    with pytest.raises(ValueError, match="0 to 9"):
        compressor_factory("zlib", 11)


@pytest.mark.parametrize(("codec", "level"), [("isal", 1), ("isal", 3), ("zlib", 0), ("zlib", 9)])
def test_bound_holds_for_incompressible_input_after_a_sync_flush(codec, level):
    for size in (0, 1, 100, 65_536, 400_000):
        compressor = compressor_factory(codec, level)()
        compressor.compress(b"warm up " * 100)
        compressor.flush(zlib.Z_SYNC_FLUSH)
        tail = compressor.compress(os.urandom(size)) + compressor.flush(zlib.Z_FINISH)
        assert len(tail) <= _bound(size)


def test_export_gzip_parts_memory_is_flat_whatever_the_row_count():
    def peak(count: int) -> int:
        tracemalloc.start()
        try:
            for _part, fileobj in export_gzip_parts(
                _rows(count), open_part=lambda i: _NullFile(), max_bytes=40_000
            ):
                fileobj.close()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(4_000), peak(32_000)
    # 8x the rows, same peak within noise: nothing grows with the batch.
    assert large < small * 1.5 + 256 * 1024


class _NullFile(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)
