"""Scoring as MMLongBench-Doc defines it (its `eval/eval_score.py`), and answer extraction.

Owns: the rule per answer format, the "Not answerable" F1, and turning a model's free-form reply into an answer
(rules here; the judge model's prompt and its reply parser are here too, the call itself is run.py's).

The rules, as the benchmark's code applies them (answers and predictions are first "cleaned": lower-cased,
parenthesised asides, surrounding quotes, a leading "$" and a trailing "%" removed):
- Integer: `int(gold) == int(float(prediction))`.
- Float: equal within 1% relative tolerance, or equal after rounding to the shorter precision (at least 2 decimals),
  percent-aware: the prediction may also match gold / 100 or gold x 100 ("0.21" matches "21%").
- String (and "None", the format of "Not answerable" questions): exact match after cleaning when the gold answer is a
  URL, a file name (.py/.ipynb), a "page ..." reference, a number or phone number, a time (a.m./p.m.), a date
  (YYYY-MM-DD, YYYY-MM) or an e-mail address; otherwise ANLS, the normalised Levenshtein similarity, counted when it
  is above 0.5 (the score is the similarity itself, else 0).
- List: order-insensitive: the lists must have the same length; sorted cleaned items must all match exactly when the
  first gold item is a number or an exact-match kind, otherwise the score is the lowest ANLS over the pairs.
- F1 over "Not answerable": recall = score sum over answerable questions / their count; precision = the same sum /
  the number of predictions that are not "Not answerable"; F1 their harmonic mean.
The benchmark's code also tries to strip "mile(s)"/"million" suffixes but discards the result (a no-op), so we do not.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

NOT_ANSWERABLE = "Not answerable"
FAILED = "Failed to extract"
FORMATS = ("Integer", "Float", "String", "List", "None")
_FORMAT_ALIASES = {"int": "Integer", "integer": "Integer", "float": "Float", "str": "String", "string": "String",
                   "list": "List", "none": "None"}  # fmt: skip
ANLS_THRESHOLD = 0.5
FLOAT_REL_TOL = 0.01
_EXACT_PATTERNS = (
    re.compile(r"\b\d+(-\d+|\s\d+)?\b"),  # numbers, telephone numbers
    re.compile(r"\b\d{4}[-\s]\d{2}[-\s]\d{2}\b"),  # YYYY-MM-DD
    re.compile(r"\b\d{4}[-\s]\d{2}\b"),  # YYYY-MM
    re.compile(r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}"),  # e-mail
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?%?|-?\.\d+%?")
_NOT_ANSWERABLE = re.compile(r"^(not answerable|unanswerable|cannot be answered|not answerable from)", re.IGNORECASE)
_ABBREVIATION_END = re.compile(r"\b[a-z]\.[a-z]\.$", re.IGNORECASE)


def canonical_format(answer_format: str) -> str:
    """Our formats (Integer, Float, String, List) and the benchmark's (Int, Float, Str, List, None) as one set."""
    name = _FORMAT_ALIASES.get(str(answer_format).strip().lower())
    if name is None:
        raise ValueError(f"unknown answer_format {answer_format!r}; expected one of {', '.join(FORMATS)}")
    return name


# ---------------------------------------------------------------------------------------------- primitives


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), two rows of the table at a time."""
    if len(a) > len(b):
        a, b = b, a
    previous = list(range(len(a) + 1))
    for j, char_b in enumerate(b, start=1):
        current = [j]
        for i, char_a in enumerate(a, start=1):
            cost = 0 if char_a == char_b else 1
            current.append(min(previous[i] + 1, current[i - 1] + 1, previous[i - 1] + cost))
        previous = current
    return previous[-1]


def anls(gold: str, prediction: str, threshold: float = ANLS_THRESHOLD) -> float:
    """1 - edit distance / longer length; 0 when that similarity is not above `threshold`."""
    longest = max(len(gold), len(prediction))
    similarity = 1.0 - (levenshtein(gold, prediction) / longest if longest else 0.0)
    return similarity if similarity > threshold else 0.0


def clean(value: Any) -> str:
    """The benchmark's normalisation: lower case, no parenthesised asides, quotes, leading $ or trailing %."""
    text = str(value).lower().strip()
    text = re.sub(r"\s*\([^)]*\)", "", text).strip()
    text = re.sub(r"^['\"]|['\"]$", "", text).strip()
    return text.lstrip("$").strip().rstrip("%").strip()


def needs_exact_match(text: str) -> bool:
    """Gold answers compared exactly: URLs, code files, page references, numbers, times, dates, e-mails."""
    if "https://" in text or text.endswith((".py", "ipynb")) or text.startswith("page"):
        return True
    if "a.m." in text or "p.m." in text:
        return True
    return any(pattern.fullmatch(text) for pattern in _EXACT_PATTERNS)


def _decimals(value: float) -> int:
    text = str(value)
    return len(text.split(".")[-1]) if "." in text else 3


def float_equal(gold: float, prediction: float) -> bool:
    """Within 1% (relative) or equal at the shorter precision (>= 2 decimals), against gold, gold/100, gold*100."""
    for candidate in (gold / 100, gold, gold * 100):
        if math.isclose(candidate, prediction, rel_tol=FLOAT_REL_TOL):
            return True
        precision = max(min(_decimals(prediction), _decimals(candidate)), 2)
        if round(prediction, precision) == round(candidate, precision):
            return True
    return False


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def as_list(value: Any) -> list[Any]:
    """A list answer from a list, or from its text ("['a', 'b']" or JSON); anything else as one item."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, list | tuple):
                return list(parsed)
    return [value]


# ---------------------------------------------------------------------------------------------- scoring


def score_answer(gold: Any, prediction: Any, answer_format: str) -> float:
    """The benchmark's score of one prediction (0..1) under the rule of `answer_format`."""
    fmt = canonical_format(answer_format)
    if fmt == "Integer":
        return _score_integer(gold, prediction)
    if fmt == "Float":
        return _score_float(gold, prediction)
    if fmt == "List":
        return _score_list(gold, prediction)
    return _score_string(gold, prediction)


def _score_integer(gold: Any, prediction: Any) -> float:
    try:
        return float(int(str(gold).strip()) == int(float(str(prediction).strip())))
    except (ValueError, OverflowError):
        return 0.0


def _score_float(gold: Any, prediction: Any) -> float:
    try:
        return float(float_equal(float(clean(gold)), float(clean(prediction))))
    except (ValueError, OverflowError):
        return 0.0


def _score_string(gold: Any, prediction: Any) -> float:
    gold_text, predicted = clean(gold), clean(prediction)
    if gold_text.endswith(".") and not predicted.endswith(".") and not _ABBREVIATION_END.search(gold_text):
        gold_text = gold_text[:-1].rstrip()  # extraction drops a sentence's final period: compare like with like
    if needs_exact_match(gold_text):
        return float(gold_text == predicted)
    return anls(gold_text, predicted)


def _score_list(gold: Any, prediction: Any) -> float:
    golds, predictions = as_list(gold), as_list(prediction)
    if len(golds) != len(predictions) or not golds:
        return 0.0
    gold_items = sorted(clean(item) for item in golds)
    predicted = sorted(clean(item) for item in predictions)
    if _is_float(gold_items[0]) or needs_exact_match(gold_items[0]):
        return float("-".join(gold_items) == "-".join(predicted))
    return min(anls(g, p) for g, p in zip(gold_items, predicted, strict=True))


def is_not_answerable(answer: Any) -> bool:
    """Whether a gold answer or a prediction is the benchmark's "Not answerable"."""
    return isinstance(answer, str) and answer.strip() == NOT_ANSWERABLE


def accuracy_and_f1(samples: Iterable[tuple[Any, Any, float]]) -> tuple[float, float]:
    """(mean score, F1 over "Not answerable") of (gold, prediction, score) triples; (0, 0) when empty."""
    rows = list(samples)
    if not rows:
        return 0.0, 0.0
    accuracy = sum(score for _, _, score in rows) / len(rows)
    answerable = [score for gold, _, score in rows if not is_not_answerable(gold)]
    answered = sum(1 for _, prediction, _ in rows if not is_not_answerable(prediction))
    if not answerable or not answered:
        return accuracy, 0.0
    recall, precision = sum(answerable) / len(answerable), sum(answerable) / answered
    return accuracy, (2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0)


def evidence_position(gold: Any, evidence_pages: Sequence[int]) -> str:
    """The benchmark's breakdown: `unanswerable`, `single-page` (one evidence page) or `cross-page`."""
    if is_not_answerable(gold):
        return "unanswerable"
    return "single-page" if len(evidence_pages) == 1 else "cross-page"


# ---------------------------------------------------------------------------------------------- extraction


def extract_answer(reply: str, answer_format: str) -> str | list[str]:
    """The answer in a reply, by rule: the text after the last "Answer:", "Not answerable" recognised, the first
    number for Integer/Float, a list parsed (or split at commas/semicolons) for List."""
    text = _after_answer_marker(reply)
    if _NOT_ANSWERABLE.match(text):
        return NOT_ANSWERABLE
    fmt = canonical_format(answer_format)
    if fmt in ("Integer", "Float") and not _is_float(clean(text)):
        match = _NUMBER.search(text)
        return match.group(0).replace(",", "") if match else text
    if fmt == "List":
        items = as_list(text)
        if len(items) == 1 and isinstance(items[0], str):
            items = [part.strip() for part in re.split(r"[;,\n]", items[0]) if part.strip()]
        return [str(item) for item in items]
    return text


def _after_answer_marker(reply: str) -> str:
    matches = list(re.finditer(r"answer\s*:", reply, flags=re.IGNORECASE))
    text = reply[matches[-1].end() :] if matches else reply
    text = text.strip().strip("*").strip()
    if text.endswith(".") and not _ABBREVIATION_END.search(text):
        text = text[:-1].rstrip()
    return text


def parse_judge_reply(reply: str) -> str:
    """The answer in a judge's "Extracted answer: ... Answer format: ..." reply, or FAILED."""
    if "Extracted answer:" not in reply:
        return FAILED
    answer = reply.split("Extracted answer:", 1)[1].split("Answer format:", 1)[0].strip()
    answer = answer.strip("`").strip()
    if _NOT_ANSWERABLE.match(answer):
        return NOT_ANSWERABLE
    return answer or FAILED
