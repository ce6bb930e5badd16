"""The ``openwit`` command line.

Every command keeps its heavy imports (torch, apache_beam, img2dataset, open_clip) inside
its body so that ``openwit --help`` stays fast. User mistakes raise
:class:`openwit.errors.UserError`: one line on stderr, exit 2, no traceback.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from openwit import __version__
from openwit.errors import UserError, access_error, interrupted, storage_error

# img2dataset imports albumentations, which otherwise checks PyPI for updates at import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

app = typer.Typer(
    name="openwit",
    help="Build CLIP-style (WebImageText) image-text datasets, audit them, train on them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openwit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from openwit.logs import configure_logging

    configure_logging(verbose)


@app.command()
def build(
    config: Annotated[
        str, typer.Option("--config", "-c", help="Build config (YAML): a path or a URL.")
    ],
    out: Annotated[
        str | None, typer.Option(help="Build directory, a path or URL (overrides `out:`).")
    ] = None,
    runner: Annotated[
        str | None, typer.Option(help="Beam runner: DirectRunner, FlinkRunner, SparkRunner, ...")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted build, keeping partial stage work.")
    ] = False,
    beam_option: Annotated[
        list[str] | None, typer.Option("--beam-option", help="Extra Beam option KEY=VALUE.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key: text.min_words=4.")
    ] = None,
) -> None:
    """Candidates -> filtered, matched, balanced, downloaded, deduplicated webdataset shards.

    Stages: ingest, text, match, balance, download, image, dedup, shard. A rerun with the
    same config skips every stage that is complete.
    """
    from openwit import fs
    from openwit.config import load_build_config, parse_assignments
    from openwit.console import BuildReporter, print_funnel, stdout
    from openwit.workers import spawned_early_for

    overrides = parse_assignments(set_ or [], "--set")
    if out is not None:
        overrides["out"] = fs.absolute(out)
    if runner is not None:
        overrides["runner"] = runner
    if beam_option:
        overrides["beam_options"] = parse_assignments(beam_option, "--beam-option")
    resolved = load_build_config(config if "://" in config else Path(config), overrides)
    try:
        # The workers import while this process imports the stages and checks the inputs.
        with spawned_early_for(resolved):
            from openwit.build import run_build

            outcome = run_build(resolved, until=until, resume=resume, reporter=BuildReporter())
    except Exception as exc:  # a read-only or full disk is one line, not a traceback
        problem = storage_error(exc, resolved.out)
        if problem is None:
            raise
        raise problem from None
    print_funnel(outcome.funnel, outcome.manifest)
    state = "complete" if outcome.complete else f"stopped after {outcome.manifest.get('until')}"
    stdout.print(f"build {state}: {outcome.build_dir}")
    if outcome.report is not None:
        stdout.print(f"report: {outcome.report}")


def _register_area_commands() -> None:
    """Commands owned by the stage packages (each module is import-light)."""
    from openwit.dedup.cli import register as register_dedup
    from openwit.queries.cli import register as register_queries
    from openwit.report.cli import register as register_report
    from openwit.train.cli import register as register_train

    register_queries(app)
    register_dedup(app)
    register_train(app)
    register_report(app)


_register_area_commands()


@app.command()
def demo(
    out: Annotated[
        str, typer.Option(help="Local folder the demo writes everything into.")
    ] = "demo-out",
) -> None:
    """Run every part that exists on a small bundled sample, offline."""
    from openwit import fs
    from openwit.demo import run_demo

    if not fs.is_local(out):  # the demo is the offline first look: its folder is local
        raise UserError(f"--out {out}: the demo writes into a local folder, not a URL")
    run_demo(fs.local_path(out))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``openwit`` script; returns the exit code."""
    # Python's last garbage collection at exit walks every object left, and after Beam
    # has run that took 0.6 s per command here; frozen objects are skipped (0.08 s).
    atexit.register(gc.freeze)
    try:
        app(args=argv, prog_name="openwit")  # standalone mode: usage errors exit 2 by themselves
    except SystemExit as exc:
        if exc.code == 130 and interrupted(exc):  # typer turns Ctrl-C into exit 130, silently
            return _interrupted()
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except UserError as exc:
        from openwit.console import error

        error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # a bucket without credentials or refusing is one line too
        if interrupted(exc):
            return _interrupted()
        problem = access_error(exc)
        if problem is None:
            raise
        from openwit.console import error

        error(str(problem))
        return problem.exit_code
    return 0


def _interrupted() -> int:
    """Ctrl-C: one line, the threads' queued work dropped so the process leaves now, 130."""
    from openwit.interrupts import stop_background_work

    print(
        "openwit: interrupted (a build keeps the work units it finished: run it again with "
        "--resume to go on from them)",
        file=sys.stderr,
    )
    stop_background_work()
    return 130


if __name__ == "__main__":
    sys.exit(main())
