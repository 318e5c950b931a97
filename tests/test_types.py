"""The types of bot/ check, strictly (mypy, configured in pyproject.toml), as in CI (.ci/run).

Here too so that a type error shows in the test run that every change goes through, with mypy's own
message, and not only in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bot_type_checks_strictly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"mypy (strict on bot/, see pyproject.toml) found:\n{done.stdout}{done.stderr}"
