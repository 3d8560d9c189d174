"""python -m lambda_src.releases.release_history (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
