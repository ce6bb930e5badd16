"""``openwit audit`` (import-light: heavy work is imported inside the command)."""

from __future__ import annotations

import typer

from openwit.stubs import STUB_CONTEXT, stub


def register(root: typer.Typer) -> None:
    root.command("audit", context_settings=STUB_CONTEXT)(
        stub("audit", "Overlap audit of evaluation sets against built shards (CLIP section 5).")
    )
