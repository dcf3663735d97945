"""The idx reader: round trips for several dtypes, raw and gzip, and clear errors for broken files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from training.data.idx import IdxFormatError, decompress, parse_idx, read_idx, read_idx_bytes, write_idx


@pytest.fixture
def make_idx(tmp_path):
    """Factory: write raw bytes to a file and return its path."""

    def make(blob: bytes, name: str = "x.idx") -> Path:
        path = tmp_path / name
        path.write_bytes(blob)
        return path

    return make


def header(code: int, *shape: int) -> bytes:
    return struct.pack(">HBB", 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


ARRAYS = {
    "uint8": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    "int8": np.array([-128, -1, 0, 1, 127], dtype=np.int8),
    "int16": np.array([[-30000, 2], [3, 30000]], dtype=np.int16),
    "int32": np.array([[-(2**31), -1], [0, 2**31 - 1], [7, 65536]], dtype=np.int32),
    "float32": np.array([[0.5, -1.25, 3.0e10]], dtype=np.float32),
    "float64": np.array([np.pi, -np.e, 1e-300], dtype=np.float64),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("kind", sorted(ARRAYS))
def test_round_trip(tmp_path, kind, compress):
    a = ARRAYS[kind]
    path = tmp_path / f"a-{kind}.idx"
    write_idx(path, a, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    b = read_idx(path)
    assert b.shape == a.shape
    assert b.dtype == a.dtype  # native byte order again after reading big-endian data
    np.testing.assert_array_equal(b, a)


def test_multi_byte_values_are_big_endian_on_disk(tmp_path):
    path = tmp_path / "i32.idx"
    write_idx(path, np.array([1, 258], dtype=np.int32), compress=False)
    assert path.read_bytes() == header(0x0C, 2) + b"\x00\x00\x00\x01\x00\x00\x01\x02"


def test_parses_hand_written_uint8_file():
    blob = header(0x08, 2, 3) + bytes(range(6))
    np.testing.assert_array_equal(parse_idx(blob), np.arange(6, dtype=np.uint8).reshape(2, 3))


def test_parsed_array_is_writable_copy():
    blob = header(0x08, 4) + bytes(4)
    a = parse_idx(blob)
    a[0] = 9  # np.frombuffer alone would be read-only
    assert a[0] == 9


def test_read_idx_bytes_decompresses_gz_and_passes_raw_through(make_idx):
    blob = header(0x08, 3) + b"abc"
    assert read_idx_bytes(make_idx(blob, "raw.idx")) == blob
    assert read_idx_bytes(make_idx(gzip.compress(blob), "c.idx.gz")) == blob


def test_write_refuses_dtype_idx_cannot_hold(tmp_path):
    with pytest.raises(KeyError):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("blob", [b"\x08\x03\x00\x08" + bytes(8), b"\x00\x01\x08\x01" + struct.pack(">I", 1) + b"x"])
def test_bad_magic(make_idx, blob):
    with pytest.raises(IdxFormatError, match="bad magic number"):
        read_idx(make_idx(blob))


def test_bad_magic_message_names_file(make_idx):
    path = make_idx(b"PK\x03\x04" + bytes(20), "archive.zip")
    with pytest.raises(IdxFormatError, match="archive.zip"):
        read_idx(path)


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_unknown_dtype_code(make_idx, code):
    with pytest.raises(IdxFormatError, match=f"unknown idx dtype code 0x{code:02x}"):
        read_idx(make_idx(header(code, 1) + b"\x00"))


def test_zero_dimensions():
    with pytest.raises(IdxFormatError, match="zero dimensions"):
        parse_idx(struct.pack(">HBB", 0, 0x08, 0))


@pytest.mark.parametrize("blob", [b"", b"\x00", b"\x00\x00\x08"])
def test_too_short_for_header(blob):
    with pytest.raises(IdxFormatError, match="too short"):
        parse_idx(blob)


@pytest.mark.parametrize("cut", [4, 5, 11])
def test_truncated_header(make_idx, cut):
    full = header(0x08, 2, 2, 2)  # 4 + 12 header bytes
    with pytest.raises(IdxFormatError, match="truncated header"):
        read_idx(make_idx(full[:cut]))


@pytest.mark.parametrize("missing", [1, 7])
def test_truncated_payload(tmp_path, missing):
    path = tmp_path / "t.idx"
    write_idx(path, np.zeros((2, 4), dtype=np.int32), compress=False)
    path.write_bytes(path.read_bytes()[:-missing])
    with pytest.raises(IdxFormatError, match=r"shape \(2, 4\) \(32 bytes of data\).*truncated or corrupt"):
        read_idx(path)


def test_trailing_garbage_is_rejected():
    with pytest.raises(IdxFormatError, match="holds 4 bytes"):
        parse_idx(header(0x08, 3) + b"abcd")


def test_truncated_payload_inside_gzip(tmp_path):
    a = np.zeros((3, 3), dtype=np.uint8)
    raw = tmp_path / "raw.idx"
    write_idx(raw, a, compress=False)
    path = tmp_path / "short.idx.gz"
    path.write_bytes(gzip.compress(raw.read_bytes()[:-2]))  # a valid gzip of a short idx file
    with pytest.raises(IdxFormatError, match="truncated or corrupt"):
        read_idx(path)


def _gz(n: int = 2000) -> bytes:
    return gzip.compress(header(0x08, n) + bytes(range(256)) * (n // 256) + bytes(n % 256), mtime=0)


@pytest.mark.parametrize("damage", ["truncated stream", "crc", "header only"])
def test_corrupt_gzip(make_idx, damage):
    blob = _gz()
    broken = {
        "truncated stream": blob[: len(blob) // 2],
        "crc": blob[:-8] + bytes([blob[-8] ^ 0xFF]) + blob[-7:],
        "header only": blob[:6],
    }[damage]
    with pytest.raises(IdxFormatError, match="corrupt gzip stream"):
        read_idx(make_idx(broken, "broken.gz"))


def test_corrupt_deflate_data_is_an_idx_format_error():
    blob = _gz()
    broken = blob[:10] + b"\xff" * 16 + blob[26:]  # gzip header intact, deflate stream garbage
    with pytest.raises(IdxFormatError, match="corrupt gzip stream"):
        decompress(broken, source="broken.gz")


def test_errors_are_value_errors():
    # Callers that catch ValueError (argument-parsing style) also catch format errors.
    assert issubclass(IdxFormatError, ValueError)
