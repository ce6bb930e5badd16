"""``report/dataset-card.md``: the build as a Hugging Face dataset card.

A YAML header the Hub reads (name, languages, licence, size category, tasks, the shards as
data files) and the sections of the Hub's card template, filled from the report's facts --
the build's own files -- and its config. What no file can say (who built it, why) is left
for the builder to add.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

#: The Hub's size categories: (upper bound, name), in order.
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
TASKS = ("zero-shot-image-classification", "image-to-text", "text-to-image")
#: Wikimedia names its dumps and page-view files with the date: enwiki-20240601-…,
#: pageviews-20240601-120000.gz.
DUMP_DATE = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?!\d)")

#: The contract's sample fields: in the tar (KEY.json) and in the Parquet index.
FIELDS = {
    "key": "9-digit sample key, the member name in the tar",
    "uid": "first 32 hex digits of sha256(url + TAB + raw caption): the record's id in the build",
    "url": "where the image was downloaded from",
    "text": "the caption (normalised alt text or pool caption)",
    "caption": "the caption (same as KEY.txt)",
    "source": "the input file the pair was read from",
    "source_offset": "the record's index in that file (crawl: the WARC record)",
    "lang": "language ID of the caption (lid.176 or langdetect)",
    "lang_score": "the language ID's confidence",
    "query_ids": "rows of the query list the caption matches",
    "width": "stored image width (px)",
    "height": "stored image height (px)",
    "original_width": "width of the downloaded image before resizing",
    "original_height": "height of the downloaded image before resizing",
    "sha256": "sha256 of the stored image bytes",
    "phash": "64-bit perceptual hash of the stored image (borders trimmed)",
    "dhash": "64-bit difference hash of the stored image (borders trimmed)",
}


def size_category(n: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>1T"


def dump_date(path: str) -> str | None:
    found = DUMP_DATE.search(path.rsplit("/", 1)[-1])
    return "-".join(found.groups()) if found else None


def header(facts: dict[str, Any]) -> dict[str, Any]:
    card, counts = facts["card"], facts["counts"]
    languages = [lang for lang, kept, _ in facts["text"]["languages"] if kept]
    meta: dict[str, Any] = {
        "pretty_name": card["pretty_name"],
        "language": languages or ["en"],
        "license": card["license"],
    }
    if card["license"] == "other":
        meta["license_name"] = card.get("license_name")
        if card.get("license_link"):
            meta["license_link"] = card["license_link"]
    meta.update(
        {
            "size_categories": [size_category(counts["samples"])],
            "task_categories": list(TASKS),
            "tags": ["image-text", "clip", "webdataset", "web-crawl"],
            "configs": [
                {
                    "config_name": "default",
                    "data_files": [{"split": "train", "path": "shards/*.tar"}],
                }
            ],
        }
    )
    return meta


def render(facts: dict[str, Any], index_schema: list[tuple[str, str]]) -> str:
    """The card's Markdown for ``facts`` and the shard index's ``(column, type)`` list."""
    meta = yaml.safe_dump(header(facts), sort_keys=False, allow_unicode=True)
    sections = [
        _summary(facts),
        _structure(index_schema),
        _creation(facts),
        _counts(facts),
        _personal(facts),
        _bias(facts),
        _licence(facts),
        _reproduce(facts),
    ]
    title = f"# Dataset card for {facts['card']['pretty_name']}\n"
    return f"---\n{meta}---\n\n{title}\n" + "\n".join(sections)


def _n(value: Any) -> str:
    return "unknown" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _summary(facts: dict[str, Any]) -> str:
    counts, build = facts["counts"], facts["build"]
    config = build["config"]
    queries = facts.get("queries") or {}
    return (
        "## Dataset summary\n\n"
        f"{_n(counts['samples'])} image-text pairs in {_n(counts['shards'])} webdataset shards, "
        f"built by openwit {build['openwit_version']} (build created {build['created']}) from "
        f"{_n(counts['input_records'])} candidate records read from "
        f"{len(config.get('inputs', []))} input(s), the way CLIP built WebImageText: captions "
        "filtered by length and language, "
        f"matched as substrings against a query list of {_n(queries.get('list_size'))} entries, "
        f"balanced to at most {_n(queries.get('cap'))} pairs per query, images downloaded, "
        "checked, resized and deduplicated. For contrastive image-text training "
        "(CLIP, open_clip) and zero-shot evaluation.\n"
    )


def _structure(index_schema: list[tuple[str, str]]) -> str:
    lines = [
        "## Dataset structure\n",
        "`shards/NNNNN.tar` (webdataset), a Parquet index `shards/NNNNN.parquet` beside each tar "
        "(one row per sample, no image bytes) and `shards/sizes.json` (samples per tar).\n",
        "### Tar members (one sample: `KEY.jpg`, `KEY.txt`, `KEY.json`)\n",
        "| member | content |",
        "|---|---|",
        "| `KEY.jpg` | the image as stored (resized, re-encoded) |",
        "| `KEY.txt` | the caption, UTF-8 |",
        "| `KEY.json` | `key`, `uid`, `url`, `caption`, `width`, `height`, `original_width`, "
        "`original_height`, `sha256`, `phash` and `dhash` (16 hex digits) |",
        "",
        "### Parquet index\n",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{name}` | {kind} | {FIELDS.get(name, '')} |" for name, kind in index_schema]
    return "\n".join(lines) + "\n"


def _creation(facts: dict[str, Any]) -> str:
    config = facts["build"]["config"]
    text, balance = config.get("text", {}), config.get("balance", {})
    download, image = config.get("download", {}), config.get("image", {})
    dedup = config.get("dedup", {})
    lines = ["## Dataset creation\n", "### Inputs\n"]
    lines += [f"- `{i['path']}` ({i.get('format') or 'format from the name'})" for i in
              config.get("inputs", [])]  # fmt: skip
    lines += ["", "### Query list\n", *_query_sources(facts), ""]
    directives = ", ".join(download.get("disallowed_header_directives", []))
    eval_sets = ", ".join(f"`{name}`" for name in dedup.get("eval_sets", {})) or "none"
    private = "allowed" if download.get("allow_private_networks") else "refused"
    lines += [
        "### Filters and thresholds\n",
        f"- Captions: at least {text.get('min_words')} words and {text.get('min_chars')} "
        f"characters, at most {text.get('max_chars')}; languages "
        f"{', '.join(text.get('languages', []))} "
        f"with language-ID score ≥ {text.get('min_lang_score')} ({text.get('lang_backend')}); "
        "file names, URLs and camera settings as captions are rejected.",
        "- Matching: a caption is kept when a query occurs in it between spaces or "
        "punctuation, case-sensitive (MetaCLIP's rule).",
        f"- Balancing: at most t = {_n(balance.get('max_per_query'))} pairs per query, kept by a "
        f"seeded hash draw (seed {balance.get('seed')}).",
        f"- Download: http(s) only, private networks {private}, "
        f"{download.get('timeout_s')} s per image, at most {_n(download.get('max_bytes'))} bytes, "
        f"{download.get('max_redirects')} redirects; User-Agent token "
        f"`{download.get('user_agent_token')}`.",
        f"- Opt-out honoured: `X-Robots-Tag` directives {directives} (for all agents or for "
        f"`{download.get('user_agent_token')}`) reject the image as `opted_out`.",
        f"- Images: shorter side ≥ {image.get('min_side')} px, aspect ratio ≤ "
        f"{image.get('max_aspect')}, at most {_n(image.get('max_pixels'))} pixels; resized to at "
        f"most {image.get('resize_max_side')} px ({image.get('resize_mode')}), stored as "
        f"{image.get('encode_format')} quality {image.get('encode_quality')}.",
        f"- Deduplication: exact (same sha256) and near duplicates (pHash within "
        f"{dedup.get('near_duplicate_radius')} bits and dHash within "
        f"{dedup.get('near_duplicate_dhash_radius')}); the record with the smallest uid is kept.",
        f"- Decontamination: evaluation sets {eval_sets}; pHash ≤ {dedup.get('eval_phash_radius')}"
        f" and dHash ≤ {dedup.get('eval_dhash_radius')} over mirrored and cropped variants; "
        f"matching samples {'removed' if dedup.get('decontaminate') else 'kept and counted'}.",
        "",
    ]
    return "\n".join(lines)


def _query_sources(facts: dict[str, Any]) -> list[str]:
    queries = facts.get("queries") or {}
    sources = facts.get("query_sources")
    lines = [f"`{queries.get('list')}`: {_n(queries.get('list_size'))} queries."]
    if not sources:
        return [*lines, "Its build summary (`*.summary.json`) was not found beside it."]
    lines.append("")
    lines += [f"- {s['source']}: {_n(s['kept'])} queries" for s in sources["sources"]]
    files = sources.get("files") or {}
    for kind, paths in files.items():
        for path in paths:
            date = dump_date(path)
            lines.append(f"- {kind} file `{path}`" + (f", dump of {date}" if date else ""))
    return lines


def _counts(facts: dict[str, Any]) -> str:
    counts = facts["counts"]
    lines = [
        "## Counts\n",
        f"- Input records: {_n(counts['input_records'])}",
        f"- Samples in the shards: {_n(counts['samples'])} in {_n(counts['shards'])} shards"
        + (f" ({_n(counts['tar_bytes'])} bytes of tar)" if counts.get("tar_bytes") else ""),
        f"- Rejected: {_n(counts['rejected'])}",
        "",
        "| stage | in | out | rejected | reasons |",
        "|---|---:|---:|---:|---|",
    ]
    for r in facts["funnel"]:
        reasons = ", ".join(f"{k} {v:,}" for k, v in r["rejected"].items())
        lines.append(
            f"| {r['stage']} | {r['in']:,} | {r['out']:,} | {r['n_rejected']:,} | {reasons} |"
        )
    return "\n".join(lines) + "\n"


def _personal(facts: dict[str, Any]) -> str:
    return (
        "## Personal and sensitive information\n\n"
        "The build removes captions that are file names, URLs or camera settings, images "
        "whose server opts out with `X-Robots-Tag`, and (when decontamination is on) images "
        "matching the evaluation sets. It does **not** detect or blur faces, remove names, "
        "e-mail addresses or other personal data from captions, filter NSFW, violent or "
        "hateful content, or check licences. Images of people, with their names in captions, "
        "are to be expected; the URLs point at the pages' hosts, which may identify people.\n"
    )


def _bias(facts: dict[str, Any]) -> str:
    return (
        "## Bias, risks and limitations\n\n"
        "The pairs are what the inputs' web pages wrote, filtered only by the rules above: "
        "they carry the web's social biases and stereotypes, its over-representation of "
        "some languages, regions and subjects, and its errors (captions that do not describe "
        "the image). The CLIP paper's cautions about models trained on unfiltered web data "
        "apply to models trained on this set: biased and denigrating associations, "
        "surveillance uses, and zero-shot classes that can be chosen to harm. The query "
        "list decides what is kept, so its sources shape what the set covers; balancing caps "
        "common queries but cannot add what the web lacks. Language ID on short captions is "
        "noisy. Overlap with the listed evaluation sets was measured; overlap with other "
        "benchmarks was not.\n"
    )


def _licence(facts: dict[str, Any]) -> str:
    card = facts["card"]
    return (
        "## Licensing\n\n"
        f"The index (captions, URLs and metadata) is released under: {card['license']}"
        + (f" ({card['license_name']})" if card.get("license_name") else "")
        + ". **Images keep their own copyright**: each belongs to its owner under its own "
        "terms, which this build does not know or clear; the opt-outs above are honoured, "
        "nothing more. Use the images only as the law where you are allows (for example a "
        "text-and-data-mining exception) and remove any image its owner asks you to.\n"
    )


def _reproduce(facts: dict[str, Any]) -> str:
    build = facts["build"]
    config = yaml.safe_dump(build["config"], sort_keys=False, allow_unicode=True)
    versions = ", ".join(f"{k} {v}" for k, v in build["versions"].items())
    return (
        "## How to reproduce\n\n"
        f"Config hash (sha256 of the resolved config): `{build['config_hash']}`. With the same "
        "inputs, query list and config, `openwit build --config build.yaml` gives the same "
        f"samples on any Beam runner. Versions: {versions}.\n\n"
        f"```yaml\n{config}```\n"
    )
