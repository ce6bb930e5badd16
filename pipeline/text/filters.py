"""Text normalisation and the content filters of the ``text`` stage, in plain Python.

:func:`normalize_text` is what every kept caption goes through: HTML entities decoded,
Unicode NFC, control and zero-width characters removed, whitespace runs collapsed to one
space. :func:`content_rejection` then names the first reason a caption is not one
(``empty_text``, ``url_text``, ``filename_text``, ``camera_settings``, ``too_short``,
``too_long``) or returns None. The specific reasons come before the length checks so the
funnel says *why* a short text is junk (``IMG_1234.JPG`` is a filename before it is short).
"""

from __future__ import annotations

import html
import re
import unicodedata

# C0/C1 controls (tab and newline included: they become spaces below), zero-width and
# bidi-control characters, the BOM, soft hyphen. Replaced by a space, then collapsed.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")

_IMAGE_EXTENSIONS = r"jpe?g|jfif|png|gif|webp|bmp|tiff?|svg|heic|heif|avif|ico|raw|cr2|nef"

# A whole text that is a URL or a bare domain path.
_URL_TEXT = re.compile(
    r"^(?:[a-z][a-z0-9+.-]*://|www\.)\S*$|^[\w-]+(?:\.[\w-]+)+/\S*$", re.IGNORECASE
)

# A whole text that is a file name: camera and phone defaults, files with an image
# extension, hashes and UUIDs.
_FILENAME_TEXT = re.compile(
    r"^(?:"
    r"(?:img|dsc|dscn|dscf|dcim|pxl|mvimg|gopr|gp|dji|sam|wp|p|pict|imag|photo|image|untitled)"
    r"[ _\-]?\d(?:[\d _\-.]*|[\w\-.()]*)(?:\.(?:" + _IMAGE_EXTENSIONS + r"))?"
    r"|(?:screenshot|screen shot|whatsapp image)\b[\w\-.() ]*\d[\w\-.() ]*"
    r"|[^/\\]{1,80}\.(?:" + _IMAGE_EXTENSIONS + r")"
    r"|[0-9a-f]{16,}(?:\.\w{2,4})?"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?:\.\w{2,4})?"
    r")$",
    re.IGNORECASE,
)

# One token of EXIF-style camera settings: f/2.8, 1/250s, 1/250 sec, ISO100, 50mm, +0.7EV.
_CAMERA_TOKEN = re.compile(
    r"^(?:f/?\d+(?:\.\d+)?|\d+/\d+(?:s|sec)?|iso\d*|\d+(?:\.\d+)?(?:mm|s|sec|ev)|"
    r"[+-]?\d+(?:\.\d+)?ev|sec|s|mm|ev|exposure|aperture|focal|length|shutter|speed|"
    r"@|,|;|\||-|\d+(?:\.\d+)?)$",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")
# Anywhere in a text: the markers counted by is_camera_settings, as a fast pre-check.
_CAMERA_MARKER_ANYWHERE = re.compile(
    r"\bf/?\d|\b\d+/\d+|\biso\d*\b|\d(?:mm|ev)\b|[+-]\d+(?:\.\d+)?ev\b", re.IGNORECASE
)
_CAMERA_MARKER = re.compile(r"^(?:f/?\d|\d+/\d+|iso|\d+(?:\.\d+)?mm$|[+-]?\d+(?:\.\d+)?ev$)", re.I)


def normalize_text(raw: str) -> str:
    """Entities decoded, NFC, invisible characters dropped, whitespace collapsed, stripped."""
    text = html.unescape(raw) if "&" in raw else raw
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if not text.isprintable():  # a cheap C check first: most captions have nothing to drop
        text = _INVISIBLE.sub(" ", text)
    return " ".join(text.split())


def is_url_text(text: str) -> bool:
    return " " not in text and _URL_TEXT.match(text) is not None


def is_filename_text(text: str) -> bool:
    # File names have few spaces; the count is far cheaper than the regex.
    return len(text) <= 120 and text.count(" ") <= 5 and _FILENAME_TEXT.match(text) is not None


def is_camera_settings(text: str) -> bool:
    """Mostly EXIF-style exposure settings: at least two setting tokens, nothing else but
    setting words, numbers and separators."""
    if _DIGIT.search(text) is None or len(_CAMERA_MARKER_ANYWHERE.findall(text)) < 2:
        return False
    tokens = [t.strip(",;|") for t in text.split()]
    tokens = [t for t in tokens if t]
    if len(tokens) < 2 or len(tokens) > 20:
        return False
    markers = sum(1 for t in tokens if _CAMERA_MARKER.match(t))
    return markers >= 2 and all(_CAMERA_TOKEN.match(t) for t in tokens)


def content_rejection(
    text: str, min_words: int, min_chars: int, max_chars: int
) -> tuple[str, str] | None:
    """``(reason, detail)`` for a normalised text that is not a caption, else None."""
    if not text:
        return "empty_text", ""
    if is_url_text(text):
        return "url_text", text[:120]
    if is_filename_text(text):
        return "filename_text", text[:120]
    if is_camera_settings(text):
        return "camera_settings", text[:120]
    if len(text) > max_chars:
        return "too_long", f"{len(text)} chars"
    words = len(text.split())
    if words < min_words or len(text) < min_chars:
        return "too_short", f"{words} words, {len(text)} chars: {text[:60]}"
    return None
