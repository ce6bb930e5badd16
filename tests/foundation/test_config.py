"""Config loading: defaults of CONTRACTS.md, strict validation, paths, overrides, hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openwit.config import BuildConfig, load_build_config, parse_assignments
from openwit.errors import ConfigError


def test_defaults_are_those_of_the_contract():
    config = BuildConfig()
    assert config.runner == "DirectRunner"
    assert config.text.languages == ["en"]
    assert (config.text.min_words, config.text.min_chars) == (3, 6)
    assert config.balance.max_per_query == 20_000
    assert config.download.allow_private_networks is False
    assert config.download.timeout_s == 10
    assert config.image.min_side == 200
    assert config.dedup.near_duplicate_radius == 4
    assert config.shards.samples_per_shard == 10_000


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    path = sub / "build.yaml"
    path.write_text(
        "out: ../build\nqueries: q.parquet\ninputs:\n  - path: crawl/*.wat.gz\n"
        "  - path: s3://bucket/pool.parquet\ndedup:\n  eval_sets: {cifar: evals/cifar}\n"
    )
    config = load_build_config(path)
    assert config.out == str(tmp_path / "build")
    assert config.queries == str(sub / "q.parquet")
    assert config.inputs[0].path == str(sub / "crawl" / "*.wat.gz")
    assert config.inputs[1].path == "s3://bucket/pool.parquet"
    assert config.dedup.eval_sets == {"cifar": str(sub / "evals" / "cifar")}


def test_overrides_win_and_beam_options_merge(tmp_path):
    path = tmp_path / "build.yaml"
    path.write_text("runner: DirectRunner\nbeam_options: {direct_num_workers: 2}\n")
    config = load_build_config(
        path,
        {
            "runner": "FlinkRunner",
            "beam_options": {"flink_master": "localhost:8081"},
            "text.min_words": 5,
        },
    )
    assert config.runner == "FlinkRunner"
    assert config.beam_options == {"direct_num_workers": 2, "flink_master": "localhost:8081"}
    assert config.text.min_words == 5


def test_unknown_keys_are_named_with_their_path(tmp_path):
    path = tmp_path / "build.yaml"
    path.write_text("inputs:\n  - path: a.parquet\n    caption_col: alt\n")
    with pytest.raises(ConfigError, match=r"unknown key 'inputs\[0\]\.caption_col'"):
        load_build_config(path)


def test_hash_is_stable_and_changes_with_values():
    assert BuildConfig().hash() == BuildConfig().hash()
    assert BuildConfig().hash() != BuildConfig(balance={"max_per_query": 10}).hash()


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_.]{0,12}", fullmatch=True),
        st.one_of(
            st.integers(), st.booleans(), st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
        ),
        max_size=5,
    )
)
def test_assignments_round_trip_yaml_scalars(pairs):
    args = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in pairs.items()]
    parsed = parse_assignments(args, "--set")
    for key, value in pairs.items():
        got = parsed[key]
        if isinstance(value, str):
            # YAML reads words such as "yes"/"null" as other scalars; strings must round-trip
            # whenever YAML would read them as strings.
            assert got == value or not isinstance(got, str)
        else:
            assert got == value


def test_assignment_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignments(["runner"], "--beam-option")


def test_empty_config_file_gives_defaults(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_build_config(path).shards.samples_per_shard == 10_000


def test_a_config_at_a_url_resolves_relative_paths_beside_it():
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe(
        "/bucket/configs/build.yaml",
        b"out: ../builds/a\nqueries: q.parquet\ninputs:\n  - path: /data/pool.jsonl\n"
        b"  - path: crawl/*.wat.gz\n  - path: s3://other/x.parquet\n",
    )
    config = load_build_config("memory://bucket/configs/build.yaml")
    assert config.out == "memory://bucket/builds/a"
    assert config.queries == "memory://bucket/configs/q.parquet"
    assert [i.path for i in config.inputs] == [
        "/data/pool.jsonl",
        "memory://bucket/configs/crawl/*.wat.gz",
        "s3://other/x.parquet",
    ]


def test_a_config_url_that_is_missing_or_not_yaml_is_one_line(tmp_path):
    import fsspec

    fsspec.filesystem("memory").pipe("/bucket/bad.yaml", b"out: [1\n")
    with pytest.raises(ConfigError, match=r"^config file not found: memory://bucket/none\.yaml$"):
        load_build_config("memory://bucket/none.yaml")
    with pytest.raises(ConfigError, match=r"^memory://bucket/bad\.yaml: invalid YAML at line 2"):
        load_build_config("memory://bucket/bad.yaml")
    local = tmp_path / "build.yaml"
    local.write_text("out: here\n")
    assert load_build_config(local.as_uri()).out == str(tmp_path / "here")
