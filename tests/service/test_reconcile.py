"""`keye reconcile` finds the submissions that reached neither videos.work nor the DLQ, and re-publishes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.kafka import ingest, producer
from service.reconcile import repair, unreached
from service.schemas import DeadLetter, SchemaError, WorkItem, encode, key_of, utcnow
from tests.support.pipeline import Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_unreached_submissions_are_found_and_republished(pipeline: Pipeline, sample_clips: list[Path]) -> None:
    s = pipeline.settings
    subs = ingest(
        [c.as_uri() for c in sample_clips[:3]] + [sample_clips[0].as_uri()],
        s,
        video_ids=["r-work", "r-dlq", "r-lost", "r-work"],
    )
    prod = producer(s)
    prod.send(s.topic_ingest, key=b"junk", value=b"not json")  # no video_id: nothing to reconcile
    prod.send(s.topic_work, key=key_of("r-work"), value=encode(WorkItem(**subs[0].model_dump(), accepted_at=utcnow())))
    letter = DeadLetter.of(encode(subs[1]), SchemaError("bad"), stage="streams.gate")
    prod.send(s.topic_dlq, key=key_of("r-dlq"), value=encode(letter))
    prod.flush()
    prod.close()

    missing = unreached(s)
    assert [(m.video_id, m.value) for m in missing] == [("r-lost", encode(subs[2]))]
    assert unreached(s, since=utcnow()) == []  # a window after every message: nothing in it

    assert repair(s, missing) == 1
    # the copy is on the ingest topic (unreached too until a gate passes it)
    assert [(m.video_id, m.value) for m in unreached(s)] == [("r-lost", encode(subs[2]))] * 2
