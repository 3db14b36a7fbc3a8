"""MMLongBench-Doc's scoring rules on the benchmark's own examples (data/samples.json of mayubo2333/MMLongBench-Doc:
gold answers and formats as the benchmark writes them), plus answer extraction."""

from __future__ import annotations

import pytest

from longdocvqa.eval.score import (
    NOT_ANSWERABLE,
    accuracy_and_f1,
    anls,
    canonical_format,
    evidence_position,
    extract_answer,
    parse_judge_reply,
    score_answer,
)

# (gold answer as in samples.json, its answer_format there, prediction, expected score)
BENCHMARK_CASES = [
    # Str: ANLS above 0.5 counts with its value; below it, 0
    ("Less well-off", "Str", "less well-off", 1.0),
    ("Less well-off", "Str", "Less well off", pytest.approx(1 - 1 / 13)),
    ("Some college or more", "Str", "Poor Financial Condition", 0.0),
    ("Europe", "Str", "(the continent) Europe", 1.0),  # parenthesised asides are dropped
    ("Latinos interviewed by cellphone", "Str", '"Latinos interviewed by cellphone"', 1.0),
    # Str, exact-match kinds: URL, notebook file, year range (number pattern)
    ("https://w.wiki/6gb", "Str", "https://w.wiki/6gb", 1.0),
    ("https://w.wiki/6gb", "Str", "https://w.wiki/6gc", 0.0),
    ("WikidataMapMakingWorkshop.ipynb", "Str", "WikidataMapMakingWorkshop", 0.0),
    ("2015-2016", "Str", "2015-2016", 1.0),
    ("2015-2016", "Str", "2015-16", 0.0),
    # Int: exact, the prediction may be written as a float
    ("8", "Int", "8", 1.0),
    ("8", "Int", "8.0", 1.0),
    ("63", "Int", "64", 0.0),
    ("19", "Int", "nineteen", 0.0),
    # Float: 1% relative tolerance, percent-aware
    ("18.29%", "Float", "18.29", 1.0),
    ("18.29%", "Float", "0.1829", 1.0),
    ("18.29%", "Float", "18.3%", 1.0),
    ("18.29%", "Float", "18.6", 0.0),
    ("21%", "Float", "0.21", 1.0),
    ("21%", "Float", "$21", 1.0),
    ("21%", "Float", "about twenty", 0.0),
    # List: order-insensitive, same length, numbers exact, strings by the lowest ANLS
    ("['White', '10%']", "List", "['10%', 'white']", 1.0),
    ("['White', '10%']", "List", ["White"], 0.0),
    ("['Circle', 'Rectangle']", "List", ["rectangle", "circle"], 1.0),
    ("['Circle', 'Rectangle']", "List", ["Circle", "Square"], 0.0),
    ("['The Economist', 'TIME']", "List", ["Time", "The Economist."], pytest.approx(1 - 1 / 14)),
    # None: the "Not answerable" questions, scored as strings
    ("Not answerable", "None", "Not answerable", 1.0),
    ("Not answerable", "None", "Europe", 0.0),
]


@pytest.mark.parametrize(("gold", "fmt", "prediction", "expected"), BENCHMARK_CASES)
def test_benchmark_rules(gold: str, fmt: str, prediction: str | list[str], expected: float) -> None:
    assert score_answer(gold, prediction, fmt) == expected


def test_our_format_names_score_like_the_benchmarks() -> None:
    assert [canonical_format(f) for f in ("Int", "Integer", "Str", "String", "Float", "List", "None")] == [
        "Integer", "Integer", "String", "String", "Float", "List", "None"
    ]  # fmt: skip
    assert score_answer(["White", "10%"], ["10%", "White"], "List") == 1.0  # our qa rows keep lists as lists
    with pytest.raises(ValueError, match="unknown answer_format"):
        canonical_format("Date")


def test_anls_threshold_is_exclusive() -> None:
    assert anls("abcd", "abxx") == 0.0  # similarity exactly 0.5 is not counted
    assert anls("abcde", "abcxx") == pytest.approx(0.6)
    assert anls("", "") == 1.0


def test_f1_over_not_answerable_follows_the_benchmark() -> None:
    samples = [
        ("8", "8", 1.0),  # answerable, right
        ("Europe", NOT_ANSWERABLE, 0.0),  # answerable, the model declined
        (NOT_ANSWERABLE, NOT_ANSWERABLE, 1.0),  # unanswerable, declined
        (NOT_ANSWERABLE, "Europe", 0.0),  # unanswerable, answered anyway
    ]
    accuracy, f1 = accuracy_and_f1(samples)
    recall, precision = 1 / 2, 1 / 2  # score sum 1 over 2 answerable; over 2 predictions that are not NA
    assert accuracy == 0.5 and f1 == pytest.approx(2 * recall * precision / (recall + precision))
    assert accuracy_and_f1([]) == (0.0, 0.0)
    assert accuracy_and_f1([(NOT_ANSWERABLE, NOT_ANSWERABLE, 1.0)]) == (1.0, 0.0)


def test_evidence_positions() -> None:
    assert evidence_position("Less well-off", [5]) == "single-page"
    assert evidence_position("8", [2, 22, 23]) == "cross-page"
    assert evidence_position(NOT_ANSWERABLE, []) == "unanswerable"


@pytest.mark.parametrize(
    ("reply", "fmt", "expected"),
    [
        ("The chart on page 5 shows it.\nAnswer: Less well-off.", "String", "Less well-off"),
        ("Answer: **Europe**", "String", "Europe"),
        ("Answer: Not answerable.", "String", NOT_ANSWERABLE),
        ("not answerable from the document", "None", NOT_ANSWERABLE),
        ("Answer: There are 8 such references.", "Integer", "8"),
        ("Answer: 1,234 people", "Integer", "1234"),
        ("Answer: 18.29%", "Float", "18.29%"),
        ("Answer: ['White', '10%']", "List", ["White", "10%"]),
        ('Answer: ["Circle", "Rectangle"]', "List", ["Circle", "Rectangle"]),
        ("Answer: Circle, Rectangle", "List", ["Circle", "Rectangle"]),
        ("Answer: 10 a.m.", "String", "10 a.m."),
    ],
)
def test_rule_extraction(reply: str, fmt: str, expected: str | list[str]) -> None:
    assert extract_answer(reply, fmt) == expected


def test_judge_reply_parsing() -> None:
    assert parse_judge_reply("Extracted answer: 10\nAnswer format: Integer") == "10"
    assert parse_judge_reply("Extracted answer: ['a', 'b']\nAnswer format: List") == "['a', 'b']"
    assert parse_judge_reply("Extracted answer: Not answerable\nAnswer format: String") == NOT_ANSWERABLE
    assert parse_judge_reply("I cannot help with that") == "Failed to extract"


def test_a_sentence_answer_scores_one_without_its_final_period() -> None:
    """Rule extraction drops a reply's final period, so a gold sentence is compared without its own."""
    gold = "When a slide is not full, the material is vertically centered within the slide."
    assert score_answer(gold, extract_answer(f"Answer: {gold}", "String"), "String") == 1.0
    assert score_answer("Made in the U.S.", "Made in the U.S", "String") < 1.0  # an abbreviation keeps its dot
