"""Logging set-up shared by the CLI and the Beam glue (import-light)."""

from __future__ import annotations

import logging


class _DropApitoolsWarning(logging.Filter):
    """Beam warns at import that the GCP extra is missing; harmless without Dataflow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def quiet_beam_logging() -> None:
    """Keep Beam's import-time and per-bundle chatter out of the user's terminal."""
    root = logging.getLogger()
    if not any(isinstance(f, _DropApitoolsWarning) for f in root.filters):
        root.addFilter(_DropApitoolsWarning())
    logging.getLogger("apache_beam").setLevel(logging.WARNING)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_beam_logging()
