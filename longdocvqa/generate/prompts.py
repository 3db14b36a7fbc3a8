"""Generation prompts: versioned package prompt files, task strings, exemplars and the generation messages.

Owns: prompt rendering from package data (`prompts/qa_<version>.md`, `qa_tasks_<version>.json`, exemplars), the
labelled page sequence of a segment in the three input modes (images / text / images+text), and the system + user
turn of one generation call in the paper's order (docs/research/paper.md §3.3).
Does not own: checks of the reply (checks.py), sending it (llm/).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import QA, Segment, Task
from longdocvqa.generate.base import PageImage
from longdocvqa.generate.checks import SECTION_NUMBERING, title_core
from longdocvqa.llm import ImageInput, Message, image_part, text_part

BUILTIN_PREFIX = "builtin://"


@cache
def load_prompt(name: str, version: str) -> dict[str, str]:
    """Sections of the package prompt file `<name>_<version>.md` (split at `<<<section>>>` lines)."""
    text = _read_package_file(f"{name}_{version}.md")
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines(keepends=True):
        marker = re.fullmatch(r"<<<([a-z_-]+)>>>\s*", line)
        if marker:
            current = marker.group(1)
            sections[current] = ""
        elif current is not None:
            sections[current] += line
    return {k: v.strip("\n") for k, v in sections.items()}


@cache
def task_strings(version: str) -> dict[str, dict[str, str]]:
    """The `{task description}` and `{extra_restriction}` strings of each task (docs/research/paper.md §3.2)."""
    data: dict[str, dict[str, str]] = json.loads(_read_package_file(f"qa_tasks_{version}.json"))
    return data


def _read_package_file(name: str) -> str:
    path = resources.files("longdocvqa") / "prompts" / name
    if not path.is_file():
        raise RecipeError(f"generate: no prompt file {name!r} in longdocvqa/prompts (check generate.prompt_version)")
    return path.read_text(encoding="utf-8")


def fill(template: str, **values: object) -> str:
    """Replace `{{name}}` placeholders (braces elsewhere, e.g. in JSON examples, are left alone)."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m.group(1)]), template)


def load_exemplars(path: str | None) -> list[dict[str, Any]]:
    """In-context exemplars from a JSONL file (or `builtin://exemplars_v1.jsonl`); none when `path` is None."""
    if not path:
        return []
    if path.startswith(BUILTIN_PREFIX):
        text = _read_package_file(path[len(BUILTIN_PREFIX) :])
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError(
                f"generate.exemplars: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            QA.model_validate(row["qa"])
        except (KeyError, TypeError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise RecipeError(f"generate.exemplars: {path} line {i}: not an exemplar ({detail})") from None
        rows.append(row)
    return rows


def pick_exemplars(exemplars: Sequence[dict[str, Any]], task: str, count: int, rng: random.Random) -> list[dict]:
    """`count` exemplars, those of the same task first, chosen deterministically by `rng`."""
    same = [e for e in exemplars if e.get("task") == task]
    other = [e for e in exemplars if e.get("task") != task]
    rng.shuffle(same)
    rng.shuffle(other)
    return (same + other)[:count]


def _reply_text(evidence: str, qa: dict[str, Any], response_mode: str) -> str:
    body = json.dumps(qa, ensure_ascii=False)
    return f"[Evidence Description]: {evidence}\n[JSON]: {body}" if response_mode == "text" else body


MODALITY = {
    "images": ("page images", "visual content"),
    "text": ("page texts", "text"),
    "images+text": ("page images, each followed by the page's text layer,", "visual content and text"),
}


@dataclass
class PromptContext:
    """What one generation prompt is built from; page parts are built once per segment and shared."""

    segment: Segment
    task: Task
    config: GenerateConfig
    response_mode: str
    pages: list[dict[str, Any]]
    exemplars: list[dict[str, Any]] = field(default_factory=list)
    previous: list[str] = field(default_factory=list)
    slot: int = 0


def page_parts(
    segment: Segment,
    pages: Sequence[int],
    input_mode: str,
    page_image: PageImage | None,
    max_pixels: int,
    images: dict[int, ImageInput] | None = None,
) -> list[dict[str, Any]]:
    """The labelled page sequence: "Page N:" before each page's image and/or text (`images` caches encodings)."""
    images = {} if images is None else images
    parts: list[dict[str, Any]] = []
    for page in pages:
        text = segment.page_texts[page - segment.start_page]
        if input_mode == "text":
            parts.append(text_part(f"Page {page}:\n{text}"))
            continue
        if page_image is None:
            raise ValueError(f"input_mode {input_mode!r} needs page images")
        if page not in images:
            images[page] = ImageInput(page_image(page), max_pixels)
        parts += [text_part(f"Page {page}:"), image_part(images[page])]
        if input_mode == "images+text":
            parts.append(text_part(f"Text layer of Page {page}:\n{text}"))
    return parts


def prompt_messages(ctx: PromptContext) -> list[Message]:
    """System + user turn of one generation call, in the paper's order (docs/research/paper.md §3.3)."""
    version, seg = ctx.config.prompt_version, ctx.segment
    prompt, strings = load_prompt("qa", version), task_strings(version)[ctx.task]
    modality, content = MODALITY[ctx.config.input_mode]
    response = prompt["response_text" if ctx.response_mode == "text" else "response_json"]
    head = [
        fill(
            prompt["task"],
            task_description=strings["description"],
            extra_restriction=strings["restriction"],
            response_format=response,
        )
    ]
    for number, ex in enumerate(ctx.exemplars, 1):
        reply = _reply_text(ex["evidence_description"], ex["qa"], ctx.response_mode)
        sections = ", ".join(ex.get("sections", [])) or "not given"
        head.append(
            fill(
                prompt["exemplar"],
                number=number,
                start_page=ex["start_page"],
                end_page=ex["end_page"],
                sections=sections,
                reply=reply,
            )
        )
    if ctx.config.questions_per_segment > 1:
        head.append(fill(prompt["series"], number=ctx.slot + 1, total=ctx.config.questions_per_segment))
    if ctx.previous:
        head.append(fill(prompt["previous"], questions="\n".join(f"- {q}" for q in ctx.previous)))
    mid = seg.start_page + (seg.end_page - seg.start_page) // 2
    head.append(
        fill(
            prompt["current_case"],
            modality=modality,
            content=content,
            start_page=seg.start_page,
            end_page=seg.end_page,
            section_example=_section_example(seg),
            page_example=mid,
            pages_example=f"{seg.start_page}, {seg.start_page + 1}, and {mid}",
        )
    )
    system = {"role": "system", "content": fill(prompt["system"], modality=modality)}
    return [system, {"role": "user", "content": message_content([text_part("\n\n".join(head)), *ctx.pages])}]


def _section_example(segment: Segment) -> str:
    """A section title of the segment without its numbering, for the scope example ("the Octave section")."""
    for title in segment.sections:
        if len(title_core(title)) >= 4:
            return SECTION_NUMBERING.sub("", " ".join(title.split()))
    return "Introduction"


def message_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only turns are sent as one string (every server accepts it); images need content parts."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts
