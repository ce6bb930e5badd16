"""Placeholders for commands whose issue has not landed: any arguments, exit 2."""

from __future__ import annotations

from collections.abc import Callable

import typer

from openwit.errors import NotBuiltYet

#: Click settings that let a stub accept whatever arguments the real command will take.
STUB_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def stub(command: str, summary: str) -> Callable[[typer.Context], None]:
    def run(ctx: typer.Context) -> None:
        raise NotBuiltYet(f"`openwit {command}`")

    run.__doc__ = f"{summary} (not built yet)"
    run.openwit_stub = True  # type: ignore[attr-defined]
    return run


def command_is_built(app: typer.Typer, *path: str) -> bool:
    """Whether ``openwit PATH...`` is a real command rather than a stub."""
    name, *rest = path
    for info in app.registered_commands:
        if (info.name or info.callback.__name__) == name and not rest:
            return not getattr(info.callback, "openwit_stub", False)
    for group in app.registered_groups:
        if group.name == name and rest and group.typer_instance is not None:
            return command_is_built(group.typer_instance, *rest)
    return False
