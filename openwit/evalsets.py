"""Evaluation sets as the contracts define them: image folders with optional names and prompts.

Layout: ``ROOT/<class folder>/<image file>``; classes in sorted folder order; optional
``ROOT/classnames.txt`` (display names, one a line, same order) and ``ROOT/templates.txt``
(prompt templates with ``{}``). Without ``templates.txt`` the prompts are CLIP's 80-template
ImageNet ensemble, read from the copy open_clip ships.

Both the overlap audit (dedup/) and zero-shot evaluation (train/) read eval sets through
this module, so they agree on which image is sample ``i`` and which label it has. A set may
be a folder in a bucket (``s3://bucket/evals/cifar10``): it is copied once per process into
a temporary folder (``openwit.staging``, removed when the process ends) and read from
there; samples are named relative to the root, so a set gives the same samples wherever it
is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from openwit import fs
from openwit.errors import UserError
from openwit.staging import local_copy

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class EvalSample:
    path: str  # relative to the set's root, POSIX separators: the sample's stable id
    label: int


@dataclass(frozen=True)
class EvalSet:
    name: str
    root: Path  # on this machine: the set's folder, or the copy of a bucket's
    source: str = ""  # the bucket URL the set was copied from

    @property
    def location(self) -> str:
        """Where the set is, as its user named it (a path or a URL)."""
        return self.source or str(self.root)

    @classmethod
    def open(cls, name: str, root: str | Path) -> EvalSet:
        source = ""
        if not fs.is_local(str(root)):
            source = str(root).rstrip("/")
            copied = local_copy(source)
            if copied is None:
                raise UserError(f"eval set {name}: no files under {source}")
            root = copied
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"eval set {name}: no such directory: {root}")
        eval_set = cls(name, root, source)
        if not eval_set.classes:
            raise UserError(f"eval set {name}: no class folders in {root}")
        if not eval_set.samples:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise UserError(
                f"eval set {name}: no images in its {len(eval_set.classes)} class folders "
                f"({root}; image files end in {suffixes})"
            )
        return eval_set

    @cached_property
    def classes(self) -> list[str]:
        """Class folder names, sorted: the label of a sample is its index here."""
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    @cached_property
    def classnames(self) -> list[str]:
        """Display names for prompts (``classnames.txt`` or the folder names)."""
        path = self.root / "classnames.txt"
        if not path.is_file():
            return [c.replace("_", " ") for c in self.classes]
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
        if len(names) != len(self.classes):
            raise UserError(
                f"eval set {self.name}: classnames.txt has {len(names)} names for "
                f"{len(self.classes)} class folders"
            )
        return names

    @cached_property
    def templates(self) -> list[str]:
        """Prompt templates with one ``{}`` each (``templates.txt`` or CLIP's ensemble)."""
        path = self.root / "templates.txt"
        if path.is_file():
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            templates = [t for t in lines if t]
            bad = [t for t in templates if t.count("{}") != 1]
            if bad or not templates:
                raise UserError(
                    f"eval set {self.name}: every line of templates.txt needs one {{}}: {bad[:1]}"
                )
            return templates
        return clip_templates()

    @cached_property
    def samples(self) -> list[EvalSample]:
        """Every image, in class order then file-name order.

        A symlink whose target is gone is a sample too: it is an image the set names but
        nobody can read, so readers count it as unreadable instead of the set shrinking.
        """
        samples = []
        for label, folder in enumerate(self.classes):
            for path in sorted((self.root / folder).rglob("*")):
                dangling = path.is_symlink() and not path.exists()
                if (path.is_file() or dangling) and path.suffix.lower() in IMAGE_SUFFIXES:
                    samples.append(EvalSample(path.relative_to(self.root).as_posix(), label))
        return samples


def clip_templates() -> list[str]:
    """CLIP's 80 ImageNet prompt templates, as shipped by open_clip."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [template("{}") for template in OPENAI_IMAGENET_TEMPLATES]


def parse_named_paths(pairs: list[str], flag: str) -> dict[str, str | Path]:
    """``["cifar=/data/cifar", ...]`` (a repeatable ``FLAG NAME=PATH``) to a dict: local
    paths as ``Path``, URLs (``s3://...``) as they were written."""
    result: dict[str, str | Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise UserError(f"{flag} expects NAME=PATH, got {pair!r}")
        if name in result:
            raise UserError(f"{flag} {name} given twice")
        result[name] = Path(path) if fs.is_local(path) else path
    return result


def parse_eval_args(pairs: list[str]) -> dict[str, str | Path]:
    """The CLI's repeatable ``--eval NAME=PATH``."""
    return parse_named_paths(pairs, "--eval")
