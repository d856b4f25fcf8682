"""One exception type for every user-facing problem.

Anything the user can fix (a bad path, a layer out of range, a foreign run directory) raises
`N2GError` with a one-line message that names the problem *and* the fix. The CLI prints exactly
that line and exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations


class N2GError(Exception):
    """A problem with the user's input or environment, described in one actionable line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class NotFoundError(N2GError):
    """The thing asked for does not exist (a unit not in the run, a graph not built yet).

    The browser answers it with 404; every other `N2GError` is bad input and answers 400.
    """
