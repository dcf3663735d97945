"""Pydantic models of every request and response body, for OpenAPI and for parsing.

- `base`: the strict `Body` base, `parse`/`parse_json`, and pydantic's errors in the API's words;
- `operations`: error bodies and responses, and the request bodies handlers read themselves;
- `v2`: the Open Inference Protocol (inference is described, not parsed, here: see service.protocol.v2);
- `tasks`: classify and score; `images`: sample, reconstruct and embed; `generate`: the generate extension and OpenAI's completions and models.

Response models document what the routes return; the routes build their answers with orjson (faster than
a model per response), and tests/service/test_schema_fuzz.py checks the answers against these schemas.
"""
