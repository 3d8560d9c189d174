"""The Lambda code root is lambda_src/retraining_trigger (handler retraining_trigger.handler.handler); trigger_world
(the tests' fakes) sits next to this file."""

import sys
from pathlib import Path

for _path in (Path(__file__).resolve().parents[3] / "lambda_src" / "retraining_trigger", Path(__file__).parent):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))
