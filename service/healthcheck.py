"""`zooserve-healthcheck`: exit 0 when the local server says it is ready, 1 otherwise.

For container healthchecks (Docker's HEALTHCHECK, Compose's `healthcheck`): slim images have no curl,
and one command shared by every image keeps the probe the same everywhere.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str] | None = None) -> int:
    port = os.environ.get("ZOOSERVE_PORT", "8000")
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
