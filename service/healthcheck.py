"""`zooserve healthcheck` (also `zooserve-healthcheck`): exit 0 when the local server says it is ready, 1
otherwise.

For container healthchecks (Docker's HEALTHCHECK, Compose's `healthcheck`): slim images have no curl,
and one command shared by every image keeps the probe the same everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Exit 0 when the server on this host answers /v2/health/ready with "
                                            "200, 1 otherwise.")
    p.add_argument("--port", type=int, default=int(os.environ.get("ZOOSERVE_PORT", "8000")),
                   help="the server's port (default: ZOOSERVE_PORT, else 8000)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="seconds to wait for the answer (default 2: inside Docker's 3 s healthcheck timeout)")
    args = p.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
