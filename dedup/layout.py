"""Names and schemas of what dedup leaves in a build directory (import-light)."""

from __future__ import annotations

import pyarrow as pa

STAGE = "dedup"
#: Eval matches of a build: files in the dedup stage's committed attempt, one per unit with
#: matches (``links.eval-matches-U.parquet``; not ``part-*``, so the next stage does not read
#: them as records).
MATCHES_GLOB = "*eval-matches*.parquet"

EVAL_MATCH_SCHEMA = pa.schema(
    [
        pa.field("eval_set", pa.string()),
        pa.field("eval_path", pa.string()),
        pa.field("eval_label", pa.int32()),
        pa.field("uid", pa.string()),
        pa.field("url", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("phash", pa.uint64()),
        pa.field("dhash", pa.uint64()),
        pa.field("variant", pa.string()),
        pa.field("phash_distance", pa.int32()),
        pa.field("dhash_distance", pa.int32()),
        pa.field("rejected", pa.bool_()),
    ]
)
