"""Download one file, verify its checksum before keeping it, and fail with a clear message when offline."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable


class DatasetUnavailable(RuntimeError):
    """The dataset is neither on disk nor downloadable."""


def fetch_verified(url: str, target: Path, sha256: str, *, how_to_get: str,
                   digest_of: Callable[[bytes], bytes] = lambda blob: blob, timeout: float = 30.0) -> Path:
    """Download `url` to `target` unless it is there already.

    The checksum is over `digest_of(blob)` (e.g. the decompressed bytes), so that a redistributor's
    recompression does not count as corruption. The file only appears under its final name once verified.
    """
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            blob = resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetUnavailable(f"could not download {url} ({exc}).\n{how_to_get}") from exc
    got = hashlib.sha256(digest_of(blob)).hexdigest()
    if got != sha256:
        raise DatasetUnavailable(f"checksum mismatch for {url}: sha256 {got}, expected {sha256}")
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(blob)
    tmp.replace(target)
    return target
