"""A small build world for the DAG tests: images on loopback, a pool, an eval set, configs.

Two dozen captioned images (and three transformed copies of evaluation images, for the
audit to find) are served from a folder on 127.0.0.1; one pool lists them with the usual
junk rows; each ``NAME.yaml`` builds that pool into ``NAME/`` and reads the query list that
the build DAG's optional query step writes from the bundled Wikipedia sample.

:class:`TripwireServer` is the test's fault injection: the first request for an armed path
runs a trap (the tests kill the download stage's pipeline process there, as a lost worker
would be killed) and is never answered.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from openwit.demo.inputs import write_demo_pool
from openwit.demo.queries import DEMO_DATA, DEMO_THRESHOLDS
from openwit.demo.web import ImageServer, QuietHandler, plant_eval_copies
from openwit.demo.world import write_eval_set, write_images

IMAGES = 24
EVAL_PER_CLASS = 2
PLANTED = 3


class TripwireServer(ImageServer):
    """An :class:`ImageServer` whose armed paths run a trap on their first request."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.traps: dict[str, Callable[[], None]] = {}
        self.sprung: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with server.lock:
                    trap = server.traps.pop(self.path, None)
                if trap is None:
                    super().do_GET()
                    return
                server.sprung.append(self.path)
                trap()
                self.close_connection = True  # never answered

        self.httpd.RequestHandlerClass = functools.partial(Handler, directory=str(root))

    def arm(self, path: str, trap: Callable[[], None]) -> None:
        with self.lock:
            self.traps[path] = trap


def kill_pipeline_of(stage: str, build_dir: Path, wait_s: float = 30.0) -> Callable[[], None]:
    """A trap that waits until ``stage`` has committed some work in ``build_dir``, then
    kills the pipeline process running it (and everything it started) with SIGKILL."""

    def partial_work() -> bool:
        stages = build_dir / "stages"
        parts = stages.rglob("part-*.parquet") if stages.is_dir() else []
        # Work in progress: the stage's committed folder does not exist yet.
        return any(stage in p.relative_to(stages).parts[0] for p in parts)

    def trap() -> None:
        deadline = time.monotonic() + wait_s
        while not partial_work() and time.monotonic() < deadline:
            time.sleep(0.1)
        victims = []
        for process in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                command = " ".join(process.cmdline())
                if "pipeline_main.py" in command and f'"step": "{stage}"' in command:
                    victims += [process, *process.children(recursive=True)]
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(victims, timeout=10)

    return trap


@dataclass
class World:
    root: Path
    web: Path  # the folder the image server serves
    eval_set: Path
    queries: Path  # where the build reads (and the query step writes) the list
    pool: Path | None = None

    def write_pool(self, base_url: str) -> Path:
        images = write_images(self.web, IMAGES, seed=0)
        planted = plant_eval_copies(self.eval_set, self.web, PLANTED)
        self.pool = write_demo_pool(self.root / "pool.jsonl", images + planted, self.web, base_url)
        return self.pool

    def config(self, name: str, **sections: Any) -> Path:
        """``NAME.yaml``: a build of the pool into ``NAME/``; ``sections`` override."""
        assert self.pool is not None, "write_pool first"
        raw: dict[str, Any] = {
            "out": str(self.root / name),
            "queries": str(self.queries),
            "inputs": [{"path": str(self.pool)}],
            "text": {"min_lang_score": 0.2},  # short demo captions (see the demo's config)
            "download": {
                "allow_private_networks": True,  # the image server is on loopback
                "timeout_s": 5,
                "per_host_requests_per_s": 0,
                "threads_per_worker": 8,
                "records_per_unit": 5,
                "retries": 0,
            },
            "dedup": {"eval_sets": {"shapes": str(self.eval_set)}},
            "shards": {"samples_per_shard": 8},
        }
        for key, value in sections.items():
            raw.setdefault(key, {}).update(value)
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return path


def make_world(root: Path) -> World:
    root.mkdir(parents=True, exist_ok=True)
    eval_set = write_eval_set(root / "eval" / "shapes", EVAL_PER_CLASS)
    web = root / "web"
    web.mkdir(exist_ok=True)
    return World(root, web, eval_set, root / "queries.parquet")


def queries_param() -> dict[str, Any]:
    """The build's ``queries`` param: the bundled sample, the demo's thresholds."""
    return {
        "wiki_dump": [str(p) for p in sorted(DEMO_DATA.glob("*.xml.bz2"))],
        "pageviews": [str(p) for p in sorted(DEMO_DATA.glob("pageviews-*.gz"))],
        "wordnet": str(DEMO_DATA / "wordnet"),
        "settings": dict(DEMO_THRESHOLDS),
    }
