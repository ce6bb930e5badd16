"""Exceptions that carry a message meant for the person at the terminal.

A ``UserError`` is a mistake the user can fix (bad config, missing file): the CLI prints its
message on one line and exits 2, never a traceback. Everything else is a bug or an
environment failure and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message is shown as is, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """The config file or a CLI override is invalid."""


class FunnelLawError(Exception):
    """The per-stage record counts do not reconcile: a record was lost or invented.

    Not a ``UserError``: it means a stage has a bug, and the build must not be marked
    complete.
    """


class StorageError(UserError):
    """A file or bucket could not be written or read (refused, missing bucket, full disk):
    the message names the URL and the store's reason, on one line."""
