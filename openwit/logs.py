"""Logging set-up shared by the CLI and the Beam glue (import-light)."""

from __future__ import annotations

import logging


class _DropApitoolsWarning(logging.Filter):
    """Beam warns at import that the GCP extra is missing; harmless without Dataflow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


class _DropStorageFailures(logging.Filter):
    """Beam logs every exception of a DoFn with its traceback before re-raising it; for a
    full or read-only disk the command reports the re-raised one in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from openwit.errors import storage_errno

        error = record.exc_info[1] if record.exc_info else None
        return error is None or storage_errno(error) is None


def _add_once(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


def quiet_beam_logging() -> None:
    """Keep Beam's import-time and per-bundle chatter out of the user's terminal."""
    _add_once(logging.getLogger(), _DropApitoolsWarning)
    _add_once(logging.getLogger("apache_beam.runners.common"), _DropStorageFailures)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_beam_logging()
