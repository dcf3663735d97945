"""A JSON response rendered by orjson, which also serialises numpy arrays without a copy to lists."""

from __future__ import annotations

import orjson
from starlette.responses import Response


class JSON(Response):
    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
