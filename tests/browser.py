"""Render a report folder in headless Chromium: console messages, broken images, a screenshot.

Debian's ``chromium`` (which .ci/run installs); tests that need it skip, saying why, where
it is missing. The page is copied with a probe script beside it that logs how many images
it has and which did not load; Chromium runs offline-safe (no background networking,
component updates, sync or first-run calls to Google) with a fresh profile, and logs the
page's console to stderr. ``OPENWIT_SCREENSHOTS=DIR`` keeps a copy of each screenshot there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium); docs/dedup.md and "
    "docs/report.md have the manual check and the rendered PNGs",
)
PROBE = (
    "<script>window.addEventListener('load',()=>{const bad=[...document.images]"
    ".filter(i=>!i.complete||i.naturalWidth===0).map(i=>i.getAttribute('src'));"
    "console.log('OPENWIT_IMAGES '+document.images.length+' BROKEN '+JSON.stringify(bad));"
    "});</script>"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)


@dataclass
class Rendering:
    images: int  # <img> elements on the page
    broken: list[str]  # their src where the image did not load
    errors: list[str]  # console lines that report an error
    console: list[str]
    screenshot: Path


def render(folder: Path, work: Path, name: str, height: int = 3000) -> Rendering:
    """Open ``folder/index.html`` (a copy, with the probe) and screenshot ``height`` pixels."""
    copy = work / f"{name}-page"
    shutil.copytree(folder, copy)
    page = (copy / "index.html").read_text(encoding="utf-8")
    (copy / "probe.html").write_text(page.replace("</body>", PROBE + "</body>"), "utf-8")
    shot = work / f"{name}.png"
    result = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={work / f'{name}-profile'}",
            f"--window-size=1200,{height}",
            f"--screenshot={shot}",
            (copy / "probe.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    probe = [line for line in console if "OPENWIT_IMAGES" in line]
    assert probe, f"the probe did not run:\n{result.stderr[-3000:]}"
    found = re.search(r"OPENWIT_IMAGES (\d+) BROKEN (\[.*?\])", probe[-1])
    assert found, probe
    errors = [line for line in console if re.search(r"rror|Uncaught", line)]
    if os.environ.get("OPENWIT_SCREENSHOTS") and shot.is_file():
        keep = Path(os.environ["OPENWIT_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / shot.name)
    return Rendering(int(found.group(1)), json.loads(found.group(2)), errors, console, shot)
