"""`python -m benchmarks.peers` or `python benchmarks/peers`: see benchmarks/peers/__init__.py."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] == str(Path(__file__).resolve().parent):  # run as `python benchmarks/peers`: the peer-side
    sys.path[0] = str(ROOT)                              # files must not shadow anything, the checkout must be
elif str(ROOT) not in sys.path:                          # importable
    sys.path.insert(0, str(ROOT))

from benchmarks.peers.run import main  # noqa: E402

sys.exit(main())
