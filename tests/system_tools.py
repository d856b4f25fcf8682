"""Shared test policy.

System tools (Debian `graphviz`, `chromium`) are installed by `make test` (its `sysdeps` step).
Outside CI a missing tool skips the tests that need it; under CI (`CI` set) it is a failure, so a
broken install can never pass as a green run with skipped browser tests.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, hint: str) -> None:
    """Skip (locally) or fail (under CI) when the system tool `name` is not installed."""
    if shutil.which(name) is not None or os.path.exists(name):
        return
    message = f"{name} not installed: {hint}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
