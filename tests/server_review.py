"""How the scripted server (openai_server.py) reviews: its verifier and judges answer from the pages they are shown.

`solve` parses the three kinds of question the server writes and computes the answer from the shown page texts
alone; `schema_problem` checks a reply against the JSON Schema a request sent (the subset pydantic writes). Stdlib
only, like the server.
"""

from __future__ import annotations

import json
import re
from typing import Any


def candidate_lines(text: str) -> list[tuple[str, str]]:
    """(previous line, line) pairs of distinctive lines with 3-12 words."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    good = [line for line in lines if 3 <= len(line.split()) <= 12 and sum(c.isalpha() for c in line) >= 10]
    unique = [line for line in good if good.count(line) == 1 and '"' not in line]
    pairs = list(zip(unique, unique[1:], strict=False))
    return [(a, b) for a, b in pairs if b.lower() not in a.lower()]


_FOLLOWS = re.compile(r'^On Page (\d+), which line directly follows the line "(.*)"\?$')
_FIRST_LINES = re.compile(r"^Based on Pages ([\d, and]+), list the first line of body text on each of these pages\.$")
_COUNT = re.compile(r'^How many times does the word "(\w+)" occur on Pages ([\d, and]+) combined\?$')


def solve(question: str, texts: dict[int, str]) -> str | list[str] | None:
    """The answer to a question of the kinds this server writes, computed from `texts` (page -> text shown) alone;
    None when the pages shown do not give it."""
    if match := _FOLLOWS.match(question):
        page, before = int(match[1]), match[2]
        following = [b for a, b in candidate_lines(texts.get(page, "")) if a == before]
        return following[0] if following else None
    if match := _FIRST_LINES.match(question):
        pages = [int(n) for n in re.findall(r"\d+", match[1])]
        firsts = [candidate_lines(texts[p])[0][1] for p in pages if p in texts and candidate_lines(texts[p])]
        return firsts or None
    if match := _COUNT.match(question):
        word, pages = match[1], [int(n) for n in re.findall(r"\d+", match[2])]
        shown = [texts[p] for p in pages if p in texts]
        count = sum(len(re.findall(rf"\b{re.escape(word)}\b", t, re.IGNORECASE)) for t in shown)
        return str(count) if shown else None
    if match := re.match(r"^What is shown on Page (\d+)\?$", question):
        return "a page" if int(match[1]) in texts else None
    return None


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def same_answer(a: Any, b: Any) -> bool:
    """Same answer up to case, punctuation and list order."""
    items = lambda v: sorted(_norm(x) for x in (v if isinstance(v, list) else [v]))  # noqa: E731
    return items(a) == items(b)


def judge_same(prompt: str) -> bool:
    """The agreement judge: answers A and B, as the prompt shows them, compared."""
    try:
        return same_answer(json.loads(field(prompt, "Answer A")), json.loads(field(prompt, "Answer B")))
    except json.JSONDecodeError:
        return False


def answer_in_question(answer: Any, question: str) -> bool:
    items = [_norm(a) for a in (answer if isinstance(answer, list) else [answer])]
    return bool(items) and all(len(a) >= 3 and f" {a} " in f" {_norm(question)} " for a in items)


def fits(task: str, fmt: str, answer: Any, evidence: list[int]) -> bool:
    if fmt == "List" and not isinstance(answer, list) or fmt != "List" and isinstance(answer, list):
        return False
    if fmt == "Integer" and not re.fullmatch(r"[+-]?\d+", str(answer).strip()):
        return False
    return len(set(evidence)) == 1 if task == "extract-single" else len(set(evidence)) >= 2 or task == "reasoning"


def field(prompt: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}: (.*)$", prompt, re.MULTILINE)
    return match.group(1).strip() if match else ""


_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def schema_problem(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> str | None:
    """Why `value` does not fit the JSON Schema `schema` (the subset pydantic writes), else None."""
    if "$ref" in schema:
        return schema_problem(value, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, where)
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema["oneOf"]
        fits = any(schema_problem(value, option, root, where) is None for option in options)
        return None if fits else f"{where}: fits none of the {len(options)} options"
    kind = schema.get("type")
    if kind == "null":
        return None if value is None else f"{where}: not null"
    if kind in _TYPES and (not isinstance(value, _TYPES[kind]) or isinstance(value, bool) and kind != "boolean"):
        return f"{where}: {type(value).__name__} is not {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {value!r} not in {schema['enum']}"
    return _bounds_problem(value, schema, where) or _nested_problem(value, schema, root, where)


def _bounds_problem(value: Any, schema: dict[str, Any], where: str) -> str | None:
    size = len(value) if isinstance(value, list | str) else None
    if size is not None and size < schema.get("minItems", schema.get("minLength", 0)):
        return f"{where}: too short"
    if size is not None and size > schema.get("maxItems", schema.get("maxLength", size)):
        return f"{where}: too long"
    if isinstance(value, int | float) and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        return f"{where}: {value} out of bounds"
    return None


def _nested_problem(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> str | None:
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            if problem := schema_problem(item, schema["items"], root, f"{where}[{i}]"):
                return problem
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        missing = [k for k in schema.get("required", []) if k not in value]
        extra = [k for k in value if k not in properties] if schema.get("additionalProperties") is False else []
        if missing or extra:
            return f"{where}: missing {missing}, unexpected {extra}"
        for key, item in value.items():
            if key in properties and (problem := schema_problem(item, properties[key], root, f"{where}.{key}")):
                return problem
    return None
