"""`python -m zooserve ...`: the `zooserve` command without its console script (zooserve/cli.py)."""

import sys

from zooserve.cli import main

sys.exit(main())
