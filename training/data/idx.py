"""Reader for the idx format used by MNIST and Fashion-MNIST (optionally gzip-compressed).

Layout (big-endian): two zero bytes, one dtype code byte, one byte with the number of dimensions `D`,
then `D` uint32 sizes, then the data in C order. See http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

# idx dtype codes -> numpy dtypes (multi-byte types are big-endian on disk).
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """The bytes are not a valid idx file (bad magic, unknown dtype, or a size that does not add up)."""


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse raw (decompressed) idx bytes into an array of the header's shape."""
    if len(data) < 4:
        raise IdxFormatError(f"{source}: {len(data)} bytes is too short for an idx header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IdxFormatError(f"{source}: bad magic number 0x{zero:04x}{code:02x}{ndim:02x} (not an idx file)")
    if code not in _DTYPES:
        raise IdxFormatError(f"{source}: unknown idx dtype code 0x{code:02x}")
    if ndim == 0:
        raise IdxFormatError(f"{source}: idx header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(f"{source}: truncated header ({len(data)} bytes, need {header_len})")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header_len
    if payload != expected:
        raise IdxFormatError(
            f"{source}: header says shape {tuple(shape)} ({expected} bytes of data) "
            f"but the file holds {payload} bytes: the file is truncated or corrupt"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def decompress(blob: bytes, *, source: str = "<bytes>") -> bytes:
    """Gunzip `blob` if it starts with the gzip magic; otherwise return it unchanged."""
    if blob[:2] != b"\x1f\x8b":
        return blob
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{source}: corrupt gzip stream ({exc})") from exc


def read_idx_bytes(path: Path) -> bytes:
    """Return the decompressed bytes of an idx file (`.gz` or raw)."""
    return decompress(Path(path).read_bytes(), source=str(path))


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(read_idx_bytes(path), source=str(path))


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> None:
    """Write `array` as idx (used by tests and by users who build their own small datasets)."""
    array = np.ascontiguousarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
    code = codes[array.dtype.newbyteorder("=")]
    big = array.astype(_DTYPES[code], copy=False)
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    blob = header + big.tobytes()
    Path(path).write_bytes(gzip.compress(blob, mtime=0) if compress else blob)
