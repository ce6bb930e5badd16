"""``openwit report`` (import-light: the report's modules are imported inside the command)."""

from __future__ import annotations

from typing import Annotated

import typer


def report(
    build: Annotated[
        str, typer.Option("--build", help="A complete build directory (OUT): a path or a URL.")
    ],
    audit: Annotated[
        str | None,
        typer.Option(help="An `openwit audit` output folder (audit.json): a path or a URL."),
    ] = None,
    train: Annotated[
        str | None,
        typer.Option(help="An `openwit train` run folder (eval.json): a path or a URL."),
    ] = None,
) -> None:
    """Write OUT/report/index.html and OUT/report/dataset-card.md for a complete build.

    `openwit build` writes them at the end of every complete build; run this to add an
    overlap audit and a training run to the report, or after editing the config's `card:`.
    """
    from openwit import fs
    from openwit.console import print_table, stdout
    from openwit.report import write_build_report

    result = write_build_report(build, audit=audit, train=train)
    facts = fs.read_json(result.facts)
    counts = facts["counts"]
    print_table(
        "openwit report",
        ["", "value"],
        [
            ["input records", counts["input_records"]],
            ["samples", counts["samples"]],
            ["shards", counts["shards"]],
            ["rejected", counts["rejected"]],
            ["funnel law", "holds" if counts["funnel_law"] else "BROKEN"],
            ["audit", "yes" if facts["audit"] else "no"],
            ["training run", "yes" if facts["training"] else "no"],
        ],
    )
    for note in result.notes:
        stdout.print(f"note: {note}", highlight=False)
    stdout.print(f"build report: {result.html}", highlight=False)
    stdout.print(f"dataset card: {result.card}", highlight=False)


def register(root: typer.Typer) -> None:
    root.command("report")(report)
