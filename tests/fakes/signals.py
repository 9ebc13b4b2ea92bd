"""Children of tests that are sent Ctrl+C, SIGHUP or SIGTERM: with the signals' default
dispositions, whatever the runner passed on.  A runner started in the background by a shell
without job control ignores SIGINT, and one started under nohup ignores SIGHUP; the ignored
dispositions are inherited, and an ignored signal is the user's wish (the plugin keeps it),
which is not the case these tests are about."""

from __future__ import annotations

import signal

__all__ = ["default_signals"]


def default_signals() -> None:
    """A ``preexec_fn``: SIGINT, SIGHUP, SIGTERM and SIGQUIT back to their defaults."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
