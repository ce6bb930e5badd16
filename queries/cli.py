"""``openwit queries build`` and ``openwit queries show`` (import-light: work is imported
inside the commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

#: Options that take several values after one flag: ``--wiki-dump a.bz2 b.bz2``.
MULTI_VALUE_OPTIONS = ("--wiki-dump", "--pageviews")


class MultiValueCommand(TyperCommand):
    """Lets ``--wiki-dump F1 F2`` mean ``--wiki-dump F1 --wiki-dump F2`` (click options
    take one value per flag; shells expand a glob into several words)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        current: str | None = None  # the multi-value option whose values are being read
        after_flag = False
        for arg in args:
            if arg.startswith("-") and arg != "-":
                current = arg if arg in MULTI_VALUE_OPTIONS else None
                after_flag = True
            elif current is not None and not after_flag:
                rewritten.append(current)
            else:
                after_flag = False
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


app = typer.Typer(help="Build and inspect the query list.", no_args_is_help=True)


@app.command("build", cls=MultiValueCommand)
def build(
    wiki_dump: Annotated[
        list[str],
        typer.Option(
            "--wiki-dump",
            help="MediaWiki XML dump(s): pages-articles*.xml.bz2 (multistream too), .xml.gz, "
            ".xml; local paths or URLs (gs://, s3://, globs). Several files are read in parallel.",
        ),
    ],
    out: Annotated[
        str, typer.Option(help="Where to write the query list (Parquet): a path or a URL.")
    ],
    pageviews: Annotated[
        list[str] | None,
        typer.Option("--pageviews", help="Hourly page-view files (pageviews-*.gz)."),
    ] = None,
    wordnet: Annotated[
        Path | None,
        typer.Option(help="WordNet database directory (WNDB: data.noun ...)."),
    ] = None,
    max_queries: Annotated[
        int | None, typer.Option(help="Cap on the list size (default 500,000).")
    ] = None,
    keep_partial: Annotated[
        bool,
        typer.Option(help="Keep what was read of a truncated or corrupt file, and say so."),
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file with thresholds.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a threshold: min_unigram_count=50."),
    ] = None,
    runner: Annotated[
        str, typer.Option(help="Beam runner: DirectRunner, FlinkRunner, SparkRunner, ...")
    ] = "DirectRunner",
    beam_option: Annotated[
        list[str] | None, typer.Option("--beam-option", help="Extra Beam option KEY=VALUE.")
    ] = None,
    work_dir: Annotated[
        str | None,
        typer.Option(help="Where workers write results (cluster runners: gs://..., s3://...)."),
    ] = None,
) -> None:
    """Wikipedia unigrams and PMI bigrams, popular titles, WordNet -> queries.parquet."""
    from openwit.config import parse_assignments
    from openwit.console import stderr
    from openwit.queries.build import build_queries
    from openwit.queries.config import load_query_config
    from openwit.queries.report import print_build_summary

    overrides = parse_assignments(set_ or [], "--set")
    if max_queries is not None:
        overrides["max_queries"] = max_queries
    if keep_partial:
        overrides["keep_partial"] = True
    resolved = load_query_config(config, overrides)
    options = parse_assignments(beam_option or [], "--beam-option")
    with stderr.status("building the query list…") as spinner:
        result = build_queries(
            wiki_dump,
            out,
            pageviews=pageviews or [],
            wordnet=wordnet,
            config=resolved,
            runner=runner,
            beam_options=options,
            status=lambda message: spinner.update(message),
            work_dir=work_dir,
        )
    print_build_summary(result)


@app.command("show")
def show(
    path: Annotated[str, typer.Argument(help="A queries.parquet: a path or a URL.")],
    limit: Annotated[int, typer.Option(help="Queries shown per source.")] = 10,
    source: Annotated[
        str | None, typer.Option(help="Only this source: unigram, bigram, title, wordnet.")
    ] = None,
) -> None:
    """A quick look at a query list: counts per source and the top queries of each."""
    from openwit.queries.report import show_queries

    show_queries(path, limit=limit, source=source)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="queries")
