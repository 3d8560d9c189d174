"""python -m model_container.dataset: see model_container/dataset/__init__.py."""

import sys

from model_container.dataset.cli import main

sys.exit(main())
