"""The Lambda code root is lambda_src/retraining_trigger (handler retraining_trigger.handler.handler)."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3] / "lambda_src" / "retraining_trigger"
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))
