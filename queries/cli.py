"""``openwit queries ...`` commands (import-light: heavy work is imported inside commands)."""

from __future__ import annotations

import typer

from openwit.stubs import STUB_CONTEXT, stub

app = typer.Typer(help="Build and inspect the query list.", no_args_is_help=True)
app.command("build", context_settings=STUB_CONTEXT)(
    stub("queries build", "Wikipedia dump + page views + WordNet -> queries.parquet.")
)
app.command("show", context_settings=STUB_CONTEXT)(
    stub("queries show", "A quick look at a queries.parquet.")
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="queries")
