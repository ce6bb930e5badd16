"""Config files as YAML mappings: read safely, a repeated key refused, errors in one line.

``yaml.safe_load`` only (no Python objects from a file), and one step more: a key written
twice in a mapping is an error naming both lines, where PyYAML would keep the last value
without a word. Every error is a :class:`~openwit.errors.ConfigError` naming the file (or
URL) and, where known, the line. The build config (:mod:`openwit.config`) and the query
build's config read their files through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from openwit.errors import ConfigError


def _repeated_key(node: yaml.Node, parent: str = "") -> tuple[str, int, int] | None:
    """The first key that a mapping in ``node`` (a composed YAML document) holds twice, as
    ``(dotted key, first line, second line)``, or None. ``yaml.safe_load`` keeps the last
    value of a repeated key without a word, so a setting written twice is silently lost."""
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _repeated_key(item, f"{parent}[{index}]")
            if found:
                return found
    elif isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}  # (tag, text) of a key -> its line
        for key, value in node.value:
            name = parent
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                name = f"{parent}.{key.value}" if parent else str(key.value)
                line = key.start_mark.line + 1
                if (key.tag, key.value) in seen:
                    return name, seen[(key.tag, key.value)], line
                seen[(key.tag, key.value)] = line
            found = _repeated_key(value, name)
            if found:
                return found
    return None


def _load_yaml(text: str, path: Path | str) -> Any:
    """``yaml.safe_load`` of ``text``, refusing a mapping that repeats a key."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        repeated = _repeated_key(node)
        if repeated:
            key, first, second = repeated
            raise ConfigError(f"{path}: key '{key}' is given twice (lines {first} and {second})")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file (and line)."""
    if path.is_dir():
        raise ConfigError(f"config file is a directory: {path} (give the YAML file in it)")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return parse_yaml_mapping(text, str(path))


def read_yaml_url(url: str) -> dict[str, Any]:
    """Read a YAML mapping from a URL (``s3://``, ``gs://``, any of :mod:`openwit.fs`)."""
    from openwit import fs
    from openwit.errors import StorageError

    try:
        data = fs.read_bytes(url)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {url}") from None
    except StorageError:
        raise
    except (ImportError, ValueError, OSError) as exc:  # no driver for the scheme, no access
        raise ConfigError(f"cannot read config {url}: {type(exc).__name__}: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{url}: not a UTF-8 text file") from None
    return parse_yaml_mapping(text, url)


def parse_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    """Parse YAML that must hold a mapping; errors name ``source`` (and the line)."""
    try:
        data = _load_yaml(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    return data
