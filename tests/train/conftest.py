"""Fixtures of the trainer's tests: real shards and eval sets from the demo world.

Images are rendered small (64 px) so the session's fixtures take seconds on two busy cores.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from openwit.demo.shards import image_samples, write_shards
from openwit.demo.world import BACKGROUNDS, CAPTION_TEMPLATES, COLOURS, SHAPES, DemoImage, render

SHARD_SIZE = 64
N_SHARDS = 6


def render_world(root: Path, count: int, seed: int, colour_captions: bool = False) -> Path:
    """``count`` small captioned shape images as shards of ``SHARD_SIZE`` in ``root/shards``."""
    rng = random.Random(seed)
    (root / "img").mkdir(parents=True)
    images = []
    for index in range(count):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        background = "grey" if colour_captions else rng.choice(list(BACKGROUNDS))
        if colour_captions:
            caption = f"a {colour} {shape}"
        else:
            caption = rng.choice(CAPTION_TEMPLATES).format(
                colour=colour, shape=shape, background=background
            )
        path = root / "img" / f"{index:05d}.jpg"
        path.write_bytes(render(colour, shape, background, rng, (64, 64)))
        images.append(DemoImage(path, colour, shape, background, caption))
    return write_shards(image_samples(images), root / "shards", per_shard=SHARD_SIZE)


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``N_SHARDS`` shards of ``SHARD_SIZE`` captioned shape images, with sizes.json."""
    return render_world(tmp_path_factory.mktemp("demo-data"), SHARD_SIZE * N_SHARDS, seed=3)


@pytest.fixture(scope="session")
def colour_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A world the tiny model learns in a hundred steps: each caption names the colour of
    a shape; the eval set has one class per colour. Returns (shard dir, eval set)."""
    root = tmp_path_factory.mktemp("colours")
    shards = render_world(root, 4 * SHARD_SIZE, seed=5, colour_captions=True)
    rng = random.Random(6)
    eval_root = root / "eval"
    for colour in COLOURS:
        (eval_root / colour).mkdir(parents=True)
        for index in range(5):
            data = render(colour, rng.choice(SHAPES), "grey", rng, (64, 64))
            (eval_root / colour / f"{index}.jpg").write_bytes(data)
    (eval_root / "templates.txt").write_text("a {} shape\na photo of a {} thing\n")
    return shards, eval_root
