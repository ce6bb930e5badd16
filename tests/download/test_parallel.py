"""The threaded core wrapper keeps CoreDoFn's rules: every record kept or rejected."""

from __future__ import annotations

import functools

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from openwit.beam import test_pipeline
from openwit.funnel import Rejection
from openwit.pipeline.parallel import apply_core_threaded


def _judge(record):
    if record["n"] % 5 == 0:
        raise ValueError(f"cannot judge {record['n']}")
    if record["n"] % 2:
        yield Rejection(record["uid"], "toy", "odd", str(record["n"]))
    else:
        yield {**record, "half": record["n"] // 2}


def _make_core():
    return functools.partial(_judge)


@pytest.mark.parametrize("threads", [1, 4])
def test_threaded_core_keeps_rejects_and_turns_exceptions_into_stage_errors(threads):
    records = [{"uid": f"u{n}", "n": n} for n in range(40)]
    with test_pipeline() as pipeline:
        kept, rejected = apply_core_threaded(
            pipeline | beam.Create(records), "toy", _make_core, threads
        )
        expected_kept = [
            {"uid": f"u{n}", "n": n, "half": n // 2} for n in range(40) if n % 2 == 0 and n % 5
        ]
        assert_that(kept, equal_to(expected_kept), label="kept")
        reasons = rejected | beam.Map(lambda r: (r["uid"], r["reason"]))
        expected_rejected = [
            (f"u{n}", "stage_error" if n % 5 == 0 else "odd")
            for n in range(40)
            if n % 5 == 0 or n % 2
        ]
        assert_that(reasons, equal_to(expected_rejected), label="rejected")
