"""Start `dagster dev` with default signal handling, so `kill <pid>` stops it.

Processes launched in the background from some shells inherit SIGINT/SIGTERM as ignored; the
Dagster dev server then survives `kill`. Resetting the handlers before exec fixes that.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    host = os.environ.get("QUANT_ASSETS_UI_HOST", "127.0.0.1")
    port = os.environ.get("QUANT_ASSETS_UI_PORT", "3000")
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    os.execv(dagster, [dagster, "dev", "-w", "workspace.yaml", "-h", host, "-p", port, *sys.argv[1:]])


if __name__ == "__main__":
    main()
