"""Container entry point. SageMaker runs ``docker run IMAGE serve``; the image's ENTRYPOINT is
``python -m model_container.entrypoint`` so this receives ``serve``.
"""

from __future__ import annotations

import os
import sys

# Import everything the workers will need while still root: after the privilege drop the
# interpreter may no longer be able to read its own installation (e.g. a venv under /root).
from model_container.server.config import ServerConfig
from model_container.server.logs import LogWriter
from model_container.server.privileges import drop_privileges
from model_container.server.supervisor import Supervisor
from model_container.server.worker import run_worker

USAGE = "usage: serve   (starts the model server on port 8080, as SageMaker does with `docker run IMAGE serve`)"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["serve"]:
        print(USAGE, file=sys.stderr)
        return 2
    config = ServerConfig.from_env()
    logs = LogWriter()
    switched = drop_privileges(config.user)  # before any model file is opened
    logs.write_now(
        {
            "level": "info",
            "event": "server_starting",
            "pid": os.getpid(),
            **switched,
            "workers": config.workers,
            "host": config.host,
            "port": config.port,
            "model_dir": str(config.model_dir),
            "timeout_s": config.timeout_s,
        }
    )
    return Supervisor(config, logs, run_worker).run()


if __name__ == "__main__":
    sys.exit(main())
