"""``openwit train`` and ``openwit eval`` (import-light: torch is imported inside commands)."""

from __future__ import annotations

import typer

from openwit.stubs import STUB_CONTEXT, stub


def register(root: typer.Typer) -> None:
    root.command("train", context_settings=STUB_CONTEXT)(
        stub("train", "Contrastive training of an open_clip model on shards.")
    )
    root.command("eval", context_settings=STUB_CONTEXT)(
        stub("eval", "Zero-shot evaluation of a checkpoint on image-folder eval sets.")
    )
