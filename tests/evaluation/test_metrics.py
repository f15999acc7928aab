"""The metrics against values worked out by hand on small fixtures (empty sides and overlaps included)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.config import Thresholds
from evaluation.moderation import ModerationCase, moderation_metrics
from evaluation.ranges import iou, union
from evaluation.retrieval import groups, near_duplicates, text_to_video
from evaluation.tags import TagCase, tag_metrics
from evaluation.text import FactItem, SummaryCase, fact_scores, lcs_length, rouge_l, summary_metrics
from service.schemas import CategoryFlag, Evidence, Moderation, Summary, TagScore


def tag(label, a=None, b=None):
    return TagScore(label=label, score=1.0, start_s=a, end_s=b)


def test_ranges_merge_overlaps_before_measuring():
    assert union([(3, 5), (0, 2), (1, 4)]) == [(0, 5)]
    assert iou([(0, 2), (1, 4)], [(2, 6)]) == pytest.approx(2 / 6)  # pred covers 0-4, truth 2-6
    assert iou([(0, 1)], [(2, 3)]) == 0.0
    assert iou([], []) == 1.0 and iou([(0, 1)], []) == 0.0


def test_tag_metrics_by_hand():
    cases = [
        TagCase([tag("ball", 0, 4), tag("red")], [tag("Ball", 2, 6), tag("dog")], 10.0),
        TagCase([tag("red")], [tag("red", 0, 5)], 10.0),
    ]
    m = tag_metrics(cases)
    # pairs: ball TP, red FN, dog FP; red TP
    assert m["micro"] == {**m["micro"], "tp": 2, "fp": 1, "fn": 1}
    assert m["micro"]["precision"] == pytest.approx(2 / 3) and m["micro"]["f1"] == pytest.approx(2 / 3)
    assert set(m["per_tag"]) == {"ball", "red"}  # the vocabulary is the labelled tags
    assert m["per_tag"]["red"]["recall"] == 0.5 and m["per_tag"]["ball"]["f1"] == 1.0
    # ball: [2,6] vs [0,4] -> 2/6; red (whole video 0-10) vs [0,5] -> 0.5
    assert m["per_tag"]["ball"]["temporal_iou"] == pytest.approx(1 / 3)
    assert m["temporal_iou"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert m["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_tag_metrics_with_an_empty_side():
    none_predicted = tag_metrics([TagCase([tag("ball")], [], 5.0)])
    assert none_predicted["micro"]["recall"] == 0.0 and none_predicted["micro"]["precision"] is None
    nothing_labelled = tag_metrics([TagCase([], [tag("ball")], 5.0)])
    assert nothing_labelled["micro"]["precision"] == 0.0 and nothing_labelled["micro"]["recall"] is None
    assert nothing_labelled["per_tag"] == {} and nothing_labelled["temporal_iou"] is None
    assert tag_metrics([])["micro"]["f1"] is None


def flag(cat, sev, conf, *ev):
    return CategoryFlag(
        category=cat, severity=sev, confidence=conf, evidence=[Evidence(start_s=a, end_s=b, reason="r") for a, b in ev]
    )


def mod(*flags):
    return Moderation(status="flagged" if flags else "clear", categories=list(flags))


def test_moderation_metrics_by_hand():
    th = Thresholds(flag_severity=2, flag_confidence=0.6)
    cases = [
        ModerationCase(mod(flag("weapons", 3, 1.0, (0, 4))), mod(flag("weapons", 3, 0.9, (2, 4)))),  # TP, sev ok
        ModerationCase(mod(flag("weapons", 2, 1.0, (0, 2))), mod(flag("weapons", 3, 0.5))),  # below confidence: leak
        ModerationCase(mod(flag("drugs", 2, 1.0, (1, 3))), mod(flag("drugs", 3, 0.7, (1, 3)))),  # TP, wrong severity
        ModerationCase(mod(), mod(flag("weapons", 2, 0.8))),  # clean, flagged: overkill
        ModerationCase(mod(), mod()),
    ]
    m = moderation_metrics(cases, ["weapons", "drugs"], th)
    w = m["per_category"]["weapons"]
    assert (w["tp"], w["fp"], w["fn"]) == (1, 1, 1)
    assert w["leakage"] == 0.5 and w["overkill"] == pytest.approx(1 / 3)  # 3 videos do not violate weapons
    assert w["evidence_iou"] == 0.5 and w["severity_accuracy"] == 1.0
    d = m["per_category"]["drugs"]
    assert d["precision"] == 1.0 and d["severity_accuracy"] == 0.0 and d["evidence_iou"] == 1.0
    o = m["overall"]
    # videos: violating 1,2,3 (flagged 1,3); clean 4,5 (flagged 4)
    assert o["precision"] == pytest.approx(2 / 3) and o["recall"] == pytest.approx(2 / 3)
    assert o["leakage"] == pytest.approx(1 / 3) and o["overkill"] == 0.5
    assert o["severity_accuracy"] == 0.5 and o["evidence_iou"] == pytest.approx(0.75)
    curve = {p["confidence"]: p for p in m["sweep"]["weapons"]}
    assert curve[0.0]["recall"] == 1.0 and curve[0.0]["precision"] == pytest.approx(2 / 3)
    assert curve[0.95]["recall"] == 0.0 and curve[0.95]["precision"] is None
    assert len(m["sweep"]["overall"]) == 21


def test_moderation_with_no_violations_and_no_flags():
    m = moderation_metrics([ModerationCase(mod(), mod())], ["weapons"], Thresholds())
    assert m["overall"]["recall"] is None and m["overall"]["overkill"] == 0.0 and m["overall"]["leakage"] is None


def test_rouge_l_by_hand():
    assert lcs_length("a b c d".split(), "a c b d".split()) == 3
    # candidate "the cat sat" vs reference "the cat sat down": lcs 3, p=1, r=3/4
    assert rouge_l("The cat sat", "the cat sat down") == pytest.approx(2 * 0.75 / 1.75)
    assert rouge_l("", "a ball") == 0.0 and rouge_l("anything", "") is None
    assert rouge_l("a ball", "a ball") == 1.0


def test_fact_recall_by_hand():
    facts = [FactItem(("ball", "red")), FactItem(("dog",)), FactItem(("text: sale",))]
    said = Summary(title="Red balls", short="a dog runs", long="")
    assert fact_scores(said, facts) == (pytest.approx(2 / 3), pytest.approx(3 / 4))
    assert fact_scores(Summary(long="big SALE today"), facts)[1] == pytest.approx(1 / 4)
    assert fact_scores(said, []) == (None, None)
    m = summary_metrics([SummaryCase(Summary(title="t", short="a b", long=""), Summary(), facts)])
    assert m["rouge_l"] == 0.0 and m["empty_predictions"] == 1 and m["rouge_l_by_field"]["long"] is None


def test_text_to_video_recall_and_mrr():
    videos = np.eye(4)
    queries = np.array([[1, 0, 0, 0], [0, 1, 0.1, 0], [0, 0.5, 0.4, 0.3]])
    # q0 -> v0 at rank 1; q1 wants v2: ranks v1, v2 -> 2; q2 wants v3: v1, v2, v3 -> 3
    m = text_to_video(queries, [{0}, {2}, {3}], videos)
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@5"] == 1.0
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert text_to_video(np.zeros((0, 4)), [], videos)["mrr"] is None


def test_constant_vectors_retrieve_at_chance():
    m = text_to_video(np.ones((200, 3)), [{i} for i in range(200)], np.ones((200, 3)))
    assert m["recall@10"] == pytest.approx(10 / 200, abs=0.04)


def test_near_duplicates_by_hand():
    group_of = list(groups({"a": None, "b": "a", "c": "b", "d": None}).values())
    assert group_of == ["a", "a", "a", "d"]
    v = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]])
    m = near_duplicates(v, group_of, threshold=0.95)
    # true pairs ab ac bc; predicted ab, cd
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 2)
    assert near_duplicates(v[:1], ["a"])["precision"] is None
