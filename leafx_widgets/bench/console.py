"""What the bench shows a person: progress bars, log lines, help text, Ctrl-C."""
from __future__ import annotations

import argparse
import signal
import threading

from .._progress import say


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help ("required" for required ones); description and
    examples kept as written."""

    def _get_help_string(self, action):
        if action.required:  # an option marked required, or a positional that must be given
            return f"{action.help} (required)"
        if "(default:" in (action.help or ""):  # the help words its own default
            return action.help
        return super()._get_help_string(action)


class GracefulStop:
    """Within ``with``: the first Ctrl-C (SIGINT) prints one line and sets ``requested``, so the
    caller stops after its current step; a second one raises KeyboardInterrupt at once.

    Only the main thread can own a signal handler; elsewhere this does nothing.
    """

    def __init__(self, message: str):
        self.message = message
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        say(self.message)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
