"""What a fresh process sees: a UI run's step, the command line and the code server each start a
new interpreter, so what they import and build on first use is measured there, not in the test
process, which has imported everything already."""

import os
import subprocess
import sys


def printed_by_fresh_process(code: str, **env: str) -> list[str]:
    """The words `code` prints when run by a new interpreter (this one's, with `env` added)."""
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.split()
