"""Opt-out by HTTP header: ``X-Robots-Tag: noai`` and friends.

Same reading as img2dataset's ``is_disallowed`` (parity is tested): each X-Robots-Tag
header is ``[token:] directive, directive, ...``; a header without a token, or with our
token, that carries a disallowed directive opts the image out. img2dataset's default
directives are ``noai, noimageai, noindex, noimageindex``. We do not import img2dataset for
this: its package import pulls in torch, pandas and wandb (seconds per worker process).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable


def opted_out(
    header_values: Iterable[str], user_agent_token: str, disallowed: Collection[str]
) -> str | None:
    """The X-Robots-Tag value that opts out, or None when the image may be used."""
    token = user_agent_token.strip().lower()
    wanted = {d.strip().lower() for d in disallowed}
    if not wanted:
        return None
    for value in header_values:
        head, sep, tail = value.partition(":")
        scope = head.strip().lower() if sep else None
        directives = (tail if sep else head).split(",")
        if scope is not None and scope != token:
            continue
        if any(d.strip().lower() in wanted for d in directives):
            return value
    return None
