"""Request bodies sent with `Content-Encoding: gzip` or `deflate` (tritonclient's
`request_compression_algorithm`, which Triton accepts), inflated under the same size limit as plain ones,
so a small compressed body cannot expand without bound."""

from __future__ import annotations

import zlib

from service.runtime.errors import BadInput, PayloadTooLarge, shown

# zlib window bits: 16 + MAX_WBITS reads the gzip wrapper; MAX_WBITS reads the zlib (deflate) wrapper.
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in WBITS:
        raise BadInput(f"Content-Encoding {shown(content_encoding)} is not supported; use gzip, deflate or none")
    inflater = zlib.decompressobj(WBITS[encoding])
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadInput(f"the body is not valid {encoding} data: {exc}") from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"the body inflates to more than {max_bytes} bytes")
    if not inflater.eof:
        raise BadInput(f"the {encoding} body is truncated")
    return out
