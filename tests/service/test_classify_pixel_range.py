"""Regression (found by benchmarks/chaos.py's fuzz scenario): pixel arrays sent to /classify with numbers
beyond the FP32 range became Inf, ran through the model and came back as a 200 with null probabilities.
They are a 400 naming the array, as the same values are in V2 infer (test_hardening.py)."""

from __future__ import annotations

import pytest

CLASSIFY = "/v1/models/lin/classify"
ZEROS = [[0] * 28 for _ in range(28)]


@pytest.mark.parametrize("value", [1e39, -1e39])
def test_pixels_beyond_fp32_are_a_400_and_the_server_serves_on(make_repo, serve, value):
    pixels = [row[:] for row in ZEROS]
    pixels[3][4] = value

    async def body(client, app):
        return (await client.post(CLASSIFY, json={"arrays": [ZEROS, pixels]}),
                await client.post(CLASSIFY, json={"arrays": [ZEROS]}))

    bad, good = serve(make_repo(("lin", 1)).root, body)
    assert bad.status_code == 400 and bad.json()["error"].startswith("arrays[1]"), bad.text
    assert good.status_code == 200
