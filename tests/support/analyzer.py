"""TEST ONLY analyzer for the pipeline tests, never used by the product.

It IS the product's KeyeAnalyzer on the random-weight `keye-tiny` model (real decoding, real
generation, real `model.embed`), with two test hooks the product does not have:
- `KEYE_TEST_ANALYZE_DELAY_S` sleeps after each video, so a test can strike mid-batch;
- a submission carrying the hashtag `flagme` gets a moderation flag, so the flag path
  (`moderation.flags`, flag tables, creator flag rates) is exercised before the moderation task exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from analysis.serving import KeyeAnalyzer
from service.schemas import AnalysisRecord, CategoryFlag, Evidence, Moderation, Submission
from service.settings import Settings

SMALL = {"max_frames": 4, "max_pixels": 4 * 56 * 56, "max_new_tokens": 8}


class TestKeyeAnalyzer(KeyeAnalyzer):
    __test__ = False  # not a pytest class

    def __init__(self, settings: Settings, **options: int) -> None:
        super().__init__(settings, **{**SMALL, **options})
        self.delay_s = float(os.environ.get("KEYE_TEST_ANALYZE_DELAY_S", "0"))

    def analyze(self, path: Path, submission: Submission) -> AnalysisRecord:
        record = super().analyze(path, submission)
        if self.delay_s:
            time.sleep(self.delay_s)
        if "flagme" in {h.lstrip("#").lower() for h in submission.hashtags}:
            flag = CategoryFlag(
                category="scam_spam",
                severity=2,
                confidence=0.9,
                evidence=[Evidence(start_s=0.0, end_s=1.0, reason="test flag")],
            )
            record = record.model_copy(update={"moderation": Moderation(status="flagged", categories=[flag])})
        return record


class BatchingTestAnalyzer(TestKeyeAnalyzer):
    """Adds `analyze_many` (as analysis.VideoAnalyzer has) and remembers each call's size."""

    def __init__(self, settings: Settings, **options: int) -> None:
        super().__init__(settings, **options)
        self.batches: list[int] = []

    def analyze_many(self, items: list[tuple[Path, Submission]]) -> list[AnalysisRecord]:
        self.batches.append(len(items))
        return [self.analyze(path, sub) for path, sub in items]
