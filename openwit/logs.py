"""Logging set-up shared by the CLI and the Beam glue (import-light)."""

from __future__ import annotations

import logging
import os

#: Beam warnings that say nothing to an openwit user: the GCP extra missing at import
#: (harmless without Dataflow), and the FnApiRunner's advice on ``direct_num_workers``,
#: which openwit's worker pool sets on purpose (openwit.workers).
_HARMLESS = ("apitools not found", "direct_running_mode should be")


class _DropApitoolsWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _HARMLESS)


class _DropStorageFailures(logging.Filter):
    """Beam logs every exception of a DoFn with its traceback before re-raising it; for a
    full or read-only disk, or the user's Ctrl-C, the command reports the re-raised one in
    one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from openwit.errors import interrupted, storage_errno

        error = record.exc_info[1] if record.exc_info else None
        return error is None or (storage_errno(error) is None and not interrupted(error))


def _add_once(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


def quiet_beam_logging() -> None:
    """Keep Beam's import-time and per-bundle chatter out of the user's terminal."""
    # gRPC's core logs a line for each connection a stopped worker closes ("Got goaway").
    # It reads this when it starts, in this process and in the workers forked from it; a
    # user's own setting wins.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    _add_once(logging.getLogger(), _DropApitoolsWarning)
    _add_once(logging.getLogger("apache_beam.runners.common"), _DropStorageFailures)
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
