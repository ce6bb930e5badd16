"""The report's facts joined record by record from the rejections: download failures by
host, duplicate groups by kept record.

The rejections hold uid, reason and detail. The host of a failed download is the host of
the URL of the download stage's input record with the rejection's uid; a duplicate group
is a kept uid and the rejections whose detail names it. Past :data:`SAMPLE_ROWS`
rejections these joins take a uniform, deterministic sample of uids and scale the counts
up (the page says "estimated"); the funnel's counts stay exact.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from openwit.builddir import BuildDir
from openwit.report.counting import TOP, strings, value_counts

#: Dedup rejections name the uid they duplicate (dedup/stage.py).
DUPLICATE_OF = r"uid (?P<kept>[0-9a-f]+)"
#: Past this many rejections, the facts that join one entry per rejection (download
#: failures by host, duplicates by group) are taken from a deterministic sample of them:
#: the uids (hex digests) below a threshold, their counts scaled up; the report says so.
#: Below it every rejection counts, exactly.
SAMPLE_ROWS = 1_000_000


# -- downloads -----------------------------------------------------------------------------------
def downloads(build: BuildDir, funnel: dict[str, Any]) -> dict[str, Any] | None:
    """Failures by reason, and by host of the failed URL.

    The rejections hold uid, reason and detail, not the URL: the URL comes from the download
    stage's input records (the balance stage's output), joined on uid.
    """
    if "download" not in funnel:
        return None
    import pyarrow.compute as pc

    counts = funnel["download"]
    share, below = uid_sample(counts["in"] - counts["out"])
    reason_of: dict[str, str] = {}
    for path in build.rejection_files("download"):
        table = build.read_table([path], ["uid", "reason"])
        if below is not None:
            table = table.filter(pc.fill_null(pc.less(table.column("uid"), below), False))
        reason_of.update(zip(table.column("uid").to_pylist(), table.column("reason").to_pylist()))
    hosts: dict[str, Counter[str]] = {}
    if reason_of:
        wanted = strings(reason_of)
        for path in build.input_files("download"):
            table = build.read_table([path], ["uid", "url"])
            table = table.filter(pc.is_in(table.column("uid"), value_set=wanted))
            for uid, url in zip(table.column("uid").to_pylist(), table.column("url").to_pylist()):
                hosts.setdefault(_host(url), Counter())[reason_of[uid]] += 1
    if share < 1:
        hosts = {h: Counter({r: round(n / share) for r, n in c.items()}) for h, c in hosts.items()}
    ranked = sorted(hosts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    return {
        "attempted": counts["in"],
        "downloaded": counts["out"],
        "failed": counts["in"] - counts["out"],
        "reasons": dict(sorted(counts["rejected"].items(), key=lambda kv: (-kv[1], kv[0]))),
        "hosts_with_failures": len(hosts),
        "top_hosts": [
            [host, sum(c.values()), ", ".join(f"{r} {n}" for r, n in c.most_common(3))]
            for host, c in ranked[:TOP]
        ],
        "host_source": "url of the download stage's input record with the rejection's uid",
        "host_sample": share,
    }


def uid_sample(rows: int) -> tuple[float, str | None]:
    """The share of ``rows`` rejections the report joins record by record, and the hex
    prefix their uids must sort below (None: all of them). uids are hex digests, so the
    uids below a prefix are a uniform, deterministic sample."""
    if rows <= SAMPLE_ROWS:
        return 1.0, None
    cut = max(1, SAMPLE_ROWS * 16**8 // rows)
    return cut / 16**8, f"{cut:08x}"


def _host(url: str | None) -> str:
    try:
        return urlsplit(url or "").hostname or "(no host)"
    except ValueError:
        return "(unparsable URL)"


# -- duplicates ----------------------------------------------------------------------------------
def duplicates(build: BuildDir, funnel: dict[str, Any]) -> dict[str, Any]:
    """Exact and near-duplicate groups: the kept record and the rejections naming it
    (groups sampled by the kept record's uid when the rejections are many)."""
    import pyarrow.compute as pc

    members: dict[str, Counter[str]] = {"exact_duplicate": Counter(), "near_duplicate": Counter()}
    removed = (funnel.get("dedup") or {}).get("rejected") or {}
    share, below = uid_sample(sum(int(removed.get(reason, 0)) for reason in members))
    for path in build.rejection_files("dedup"):
        table = build.read_table([path], ["reason", "detail"])
        table = table.filter(pc.is_in(table.column("reason"), value_set=strings(members)))
        found = pc.extract_regex(table.column("detail"), DUPLICATE_OF)
        kept_uid = pc.struct_field(found, [0])
        kept_uid = pc.fill_null(kept_uid, "")
        if below is not None:
            in_sample = pc.less(kept_uid, below)
            table, kept_uid = table.filter(in_sample), kept_uid.filter(in_sample)
        for reason in members:
            of_reason = pc.equal(table.column("reason"), reason)
            members[reason].update(value_counts(kept_uid.filter(of_reason)))
    result = {}
    for reason, kind in (("exact_duplicate", "exact"), ("near_duplicate", "near")):
        sizes = Counter(1 + n for n in members[reason].values())
        if share < 1:
            sizes = Counter({size: round(n / share) for size, n in sizes.items()})
        result[kind] = {
            "groups": sum(sizes.values()),
            "removed": int(removed.get(reason, 0)) if share < 1 else sum(members[reason].values()),
            "group_sizes": [[size, sizes[size]] for size in sorted(sizes)],
            "group_sample": share,
        }
    return result
