"""Logging set-up shared by the CLI and the Beam glue (import-light)."""

from __future__ import annotations

import logging

#: Beam warnings that say nothing to an openwit user: the GCP extra missing at import
#: (harmless without Dataflow), and the FnApiRunner's advice on ``direct_num_workers``,
#: which openwit's worker pool sets on purpose (openwit.workers).
_HARMLESS = ("apitools not found", "direct_running_mode should be")


class _DropApitoolsWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _HARMLESS)


def quiet_beam_logging() -> None:
    """Keep Beam's import-time and per-bundle chatter out of the user's terminal."""
    root = logging.getLogger()
    if not any(isinstance(f, _DropApitoolsWarning) for f in root.filters):
        root.addFilter(_DropApitoolsWarning())
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    runner_log = logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner")
    if not any(isinstance(f, _DropApitoolsWarning) for f in runner_log.filters):
        runner_log.addFilter(_DropApitoolsWarning())


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_beam_logging()
