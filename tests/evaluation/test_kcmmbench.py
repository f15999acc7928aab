"""KC-MMBench files in VLMEvalKit's TSV layout, generated here: scoring by hand-worked answers, and a
run of the random-weight model that writes its predictions back in the same layout."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from evaluation import kcmmbench as K


def _png(colour: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _write(path: Path, rows: list[dict]) -> Path:
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "index", k))
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, delimiter="\t")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


ROWS = [  # (row, prediction, correct?)
    (
        {"index": 1, "category": "SPU", "question": "Are these the same product?", "answer": "yes"},
        "<think>both are red mugs, so no doubt</think>Yes, they are.",
        True,
    ),
    ({"index": 2, "category": "SPU", "question": "Same product?", "answer": "no"}, "是的", False),
    ({"index": 3, "category": "SPU", "question": "Same product?", "answer": "否"}, "<think>yes?</think>不是", True),
    ({"index": 4, "category": "SPU", "question": "Same product?", "answer": "yes"}, "yes and no", False),  # unknown
    (
        {
            "index": 5,
            "category": "CPV",
            "question": "Colour of the shoe?",
            "answer": "B",
            "A": "red",
            "B": "blue",
            "C": "green",
            "D": "black",
        },
        "<think>A is wrong</think>B",
        True,
    ),
    (
        {
            "index": 6,
            "category": "CPV",
            "question": "Colour?",
            "answer": "C",
            "A": "red",
            "B": "blue",
            "C": "green",
            "D": "black",
        },
        "It is green.",
        True,
    ),
    (
        {
            "index": 7,
            "category": "CPV",
            "question": "Colour?",
            "answer": "A",
            "A": "red",
            "B": "blue",
            "C": "",
            "D": "",
        },
        "D",
        False,
    ),
    (
        {"index": 8, "category": "Collection_Order", "question": "Order the videos.", "answer": "2, 1, 3"},
        "<think>first the intro</think> 2,1,3",
        True,
    ),
]


@pytest.fixture
def tsv(tmp_path) -> Path:
    Image.new("RGB", (56, 56), "white").save(tmp_path / "frame.png")
    rows = []
    for n, (row, pred, _) in enumerate(ROWS):
        media = (
            {"image": _png("red")}
            if n % 3 == 0
            else {"image": json.dumps([_png("red"), _png("blue")])}
            if n % 3 == 1
            else {"image_path": "frame.png"}
        )
        rows.append({**row, **media, "prediction": pred})
    return _write(tmp_path / "KC.tsv", rows)


def test_scores_by_hand(tsv):
    scores, predictions = K.run(tsv)
    per = scores["per_category"]
    assert (per["SPU"]["correct"], per["SPU"]["items"], per["SPU"]["unextracted"], per["SPU"]["kind"]) == (
        2,
        4,
        1,
        "yes_no",
    )
    assert per["CPV"]["accuracy"] == pytest.approx(2 / 3) and per["CPV"]["kind"] == "choice"
    assert per["Collection_Order"] == {**per["Collection_Order"], "accuracy": 1.0, "kind": "vqa"}
    assert scores["overall"]["correct"] == sum(ok for *_, ok in ROWS) == 5 and scores["overall"]["items"] == 8
    items = {i.index: i for i in K.read_tsv(tsv)}
    assert (
        len(items["2"].images) == 2
        and isinstance(items["3"].images[0], str)
        and items["7"].options == {"A": "red", "B": "blue"}
    )
    assert "Answer with the option's letter only." in items["5"].prompt()


def test_think_blocks_are_stripped_before_matching():
    assert K.strip_thinking("<think>no no no</think>\nyes") == "yes"
    assert K.yes_no("<think>是</think>否") == "no" and K.yes_no("maybe") is None
    assert K.choice("<analysis>A</analysis><think>C</think>the answer is B", {"A": "x", "B": "y", "C": "z"}) == "B"


def test_a_file_without_the_columns_is_refused(tmp_path):
    bad = _write(tmp_path / "bad.tsv", [{"id": 1, "q": "x"}])
    with pytest.raises(ValueError, match="index, question and answer"):
        K.read_tsv(bad)


@pytest.mark.slow
def test_keye_tiny_answers_a_file_and_writes_its_predictions(tmp_path):
    rows = [{k: v for k, v in row.items()} | {"image": _png("green")} for row, _, _ in ROWS[:4:2] + ROWS[4:5]]
    src = _write(tmp_path / "Tiny.tsv", rows)
    env = {**os.environ, "KEYE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "eval",
            "kcmmbench",
            str(src),
            "--model",
            "keye-tiny",
            "--out",
            str(tmp_path / "s.json"),
            "--max-new-tokens",
            "8",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["overall"]["items"] == 3 and 0.0 <= scores["overall"]["accuracy"] <= 1.0
    assert set(scores["per_category"]) == {"SPU", "CPV"} and "overall" in done.stdout
    written = tmp_path / "Tiny-predictions.tsv"
    again, predictions = K.run(written)  # the written file scores the same from its prediction column
    assert again["overall"] == scores["overall"] and len(predictions) == 3
