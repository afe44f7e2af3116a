"""batches.exporting: split at the limit (never over, nearly full, between lines), MD5/size of
what was written, chunk boundaries anywhere, flat memory. Pure: no database."""

import gzip
import hashlib
import io
import os
import random
import tracemalloc
import zlib

import pytest

from batches.exporting import ExportError, _bound, compressor_factory, export_gzip_parts


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


def _chunks(lines: list[bytes], *, seed: int = 1, largest: int = 20_000):
    """The lines' bytes cut at random places (inside lines too), like a COPY stream."""
    data = b"".join(lines)
    rnd = random.Random(seed)
    start = 0
    while start < len(data):
        stop = start + rnd.randint(1, largest)
        yield data[start:stop]
        start = stop


def _export(chunks, **kw):
    files: list[io.BytesIO] = []

    def open_part(index: int) -> io.BytesIO:
        assert index == len(files) + 1
        files.append(io.BytesIO())
        return files[-1]

    parts = [part for part, _ in export_gzip_parts(chunks, open_part=open_part, **kw)]
    return parts, [f.getvalue() for f in files]


@pytest.mark.parametrize(("codec", "level"), [("isal", 2), ("zlib", 6), ("isal", 1)])
def test_export_gzip_parts_split_at_limit_never_over_and_nearly_full(codec, level):
    limit = 60_000
    lines = [_line(n, pad=40) for n in range(1, 3001)]
    parts, blobs = _export(_chunks(lines), max_bytes=limit, codec=codec, level=level)

    assert len(parts) > 3
    for part, blob in zip(parts, blobs, strict=True):
        assert len(blob) == part.size <= limit
        assert hashlib.md5(blob).hexdigest() == part.md5
    # Every file but the last is at least 98 % full (lines are ~150 bytes here).
    assert all(part.size >= 0.98 * limit for part in parts[:-1])
    # Decompressed, the files hold every line once, in order, split between whole lines.
    unpacked = [gzip.decompress(blob) for blob in blobs]
    assert b"".join(unpacked).splitlines(keepends=True) == lines
    assert all(text.endswith(b"\n") for text in unpacked)
    assert [p.records for p in parts] == [len(text.splitlines()) for text in unpacked]
    assert [p.raw_bytes for p in parts] == [len(text) for text in unpacked]
    # Line numbers of each file within the stream, for the items.
    assert parts[0].first_line == 1
    assert parts[-1].last_line == 3000
    assert all(a.last_line + 1 == b.first_line for a, b in zip(parts, parts[1:], strict=False))


@pytest.mark.parametrize("largest", [1, 97, 1_000_000])
def test_export_gzip_parts_any_chunking_gives_legal_full_files(largest):
    lines = [_line(n, pad=20) for n in range(1, 800)]
    parts, blobs = _export(_chunks(lines, largest=largest, seed=largest), max_bytes=20_000)
    assert len(parts) >= 2
    assert all(len(blob) <= 20_000 for blob in blobs)
    # The fixed slack (FINISH_BYTES) weighs more against a 20 KB limit than a 50 MB one.
    assert all(part.size >= 0.97 * 20_000 for part in parts[:-1])
    assert b"".join(gzip.decompress(blob) for blob in blobs) == b"".join(lines)


def test_export_gzip_parts_incompressible_lines_stay_under_limit():
    # Random hex barely compresses: the size bound, not the ratio, must keep files legal.
    limit = 20_000
    parts, blobs = _export(_chunks([_line(n, pad=300) for n in range(400)]), max_bytes=limit)
    assert len(parts) >= 6
    assert all(len(blob) <= limit for blob in blobs)
    assert all(part.size >= 0.9 * limit for part in parts[:-1])


@pytest.mark.parametrize("largest", [10, 5_000, 1_000_000])
def test_export_gzip_parts_at_most_max_records_a_file(largest):
    lines = [_line(n) for n in range(1, 251)]
    parts, blobs = _export(_chunks(lines, largest=largest), max_bytes=10_000_000, max_records=100)
    assert [p.records for p in parts] == [100, 100, 50]
    assert [(p.first_line, p.last_line) for p in parts] == [(1, 100), (101, 200), (201, 250)]
    assert b"".join(gzip.decompress(b) for b in blobs) == b"".join(lines)


def test_export_gzip_parts_writes_plain_utf8_ndjson_without_bom():
    line = '{"ref":"r","value":{"city":"Dún Laoghaire"}}\n'.encode()
    _, blobs = _export(iter([line[:25], line[25:]]), max_bytes=10_000)
    text = gzip.decompress(blobs[0])
    assert not text.startswith(b"\xef\xbb\xbf")
    assert text.decode("utf-8") == '{"ref":"r","value":{"city":"Dún Laoghaire"}}\n'


def test_export_gzip_parts_same_lines_give_same_checksum():
    lines = [_line(n) for n in range(500)]
    first, _ = _export(_chunks(lines, seed=3), max_bytes=50_000)
    second, _ = _export(_chunks(lines, seed=3), max_bytes=50_000)
    assert [p.md5 for p in first] == [p.md5 for p in second]


def test_export_gzip_parts_line_larger_than_a_file_is_an_error():
    with pytest.raises(ExportError, match="Line 2 is 5001 bytes long"):
        _export(iter([b"{}\n", b"x" * 5000 + b"\n"]), max_bytes=2_000)


def test_export_gzip_parts_refuses_a_stream_without_final_newline():
    with pytest.raises(ExportError, match="middle of a line"):
        _export(iter([b'{"a":1}\n{"b":']), max_bytes=10_000)


def test_export_gzip_parts_no_lines_no_files():
    parts, blobs = _export(iter(()), max_bytes=10_000)
    assert parts == []
    assert blobs == []


def test_export_gzip_parts_reports_progress_in_lines():
    seen = []
    lines = [_line(n) for n in range(100)]
    _export(_chunks(lines, largest=3_000), max_bytes=50_000, on_lines=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == 100


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


def test_export_gzip_parts_memory_is_flat_whatever_the_line_count():
    def peak(count: int) -> int:
        def chunks():
            block = []
            for n in range(count):
                block.append(_line(n))
                if len(block) == 50:
                    yield b"".join(block)
                    block = []
            yield b"".join(block)

        tracemalloc.start()
        try:
            for _part, fileobj in export_gzip_parts(
                chunks(), open_part=lambda i: _NullFile(), max_bytes=40_000
            ):
                fileobj.close()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(4_000), peak(32_000)
    # 8x the lines, same peak within noise: nothing grows with the stream.
    assert large < small * 1.5 + 256 * 1024


class _NullFile(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)
