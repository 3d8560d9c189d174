"""Container-task entry point (ECS Fargate, for windows too large for Lambda): one drift run, then exit.

    python -m drift_engine.task [--window-start ISO | --window-end ISO] [--window-hours N]

Without a window it analyses the last complete hours, as the hourly Lambda does. Prints the run summary as
one JSON line (the task's log); exits 1 if the run fails, so the scheduler records a failed task.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

from drift_engine import handler
from drift_engine.job import run_drift_job
from drift_engine.settings import Settings
from drift_engine.window import resolve_window


def main(argv: list[str] | None = None, clients: Any = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--window-start", help="ISO time; the window starts at its hour")
    parser.add_argument("--window-end", help="ISO time; the window ends at its hour")
    parser.add_argument("--window-hours", type=int, help="default: WINDOW_HOURS")
    args = parser.parse_args(argv)
    event = {
        key: value
        for key, value in (
            ("window_start", args.window_start),
            ("window_end", args.window_end),
            ("window_hours", args.window_hours),
        )
        if value is not None  # `--window-hours 0` is an error naming the key, never the default
    }
    try:
        settings = Settings.from_env()
        window = resolve_window(event, settings.window_hours)
        summary = run_drift_job(settings, window, clients or handler._clients())
    except Exception as error:  # the task's log must say why; the exit code marks the task failed
        print(json.dumps({"level": "error", "event": "drift_run_failed", "error": str(error),
                          "traceback": traceback.format_exc()}), flush=True)  # fmt: skip
        return 1
    print(json.dumps({"level": "info", "event": "drift_run_finished", **summary}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
