"""Length-controlled full-document prompts: the whole relevant document, padded with other documents of the split.

Owns: the prompt format, the padding plan of each (question, target length) and its exact length.

Format (MMLongBench v1.1's document QA with page numbers, since questions cite pages), one user turn:
    {ANSWER_INSTRUCTION}\\n\\nDocument A, Page 1: <image>\\nDocument A, Page 2: <image> ... \\nDocument B, Page 1: ...
    \\nQuestion: Based on Document B, answer the following question. {question}
In text mode each page is its label, a newline and the page's text, pages separated by a blank line.

Padding: the split's other documents, in a deterministic shuffle per question (sha256 of seed, question and
document), are taken page by page in reading order until the next page would pass the target; the relevant document
(all its pages, in order) goes in at the document boundary nearest to a depth drawn per question (the same at every
length), and the depth actually reached (share of content tokens before it) is recorded. Lengths are exact
Qwen2.5-VL token counts (assembly/tokens.py: chat template with its default system prompt, images by smart_resize, the
generation prompt `<|im_start|>assistant\\n` included); the model's answer comes on top of the target. A question whose
own document does not fit is skipped at that length. When the split has too few other pages the prompt stays short
and the plan says so (`padding_exhausted`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from longdocvqa.assembly.assemble import ANSWER_INSTRUCTION
from longdocvqa.assembly.sampling import unit_draw
from longdocvqa.assembly.tokens import HUB_MAX_PIXELS, TokenCounter
from longdocvqa.eval.data import EvalDocument, EvalQuestion
from longdocvqa.llm import ImageInput, Message, image_part, text_part

InputMode = Literal["images", "text"]
TEMPLATE_ID = "eval-docqa@v1"
_IMAGE_CACHE = 512


@dataclass
class PromptPlan:
    """Which pages a prompt holds, in order, and its exact length; `skipped` names why it was not built."""

    question_id: str
    target_tokens: int
    prompt_tokens: int
    blocks: list[tuple[str, int]] = field(default_factory=list)  # (doc_id, first n pages), in prompt order
    relevant_block: int = 0
    depth: float = 0.0
    padding_exhausted: bool = False
    skipped: str = ""

    @property
    def num_pages(self) -> int:
        return sum(n for _, n in self.blocks)


def page_label(name: str, page: int) -> str:
    return f"Document {name}, Page {page}: "


def question_line(name: str, question: str) -> str:
    return f"Question: Based on Document {name}, answer the following question. {question}"


class PromptBuilder:
    """Plans and builds the prompts of one evaluation (documents, counter, input mode and seed fixed)."""

    def __init__(
        self, documents: dict[str, EvalDocument], counter: TokenCounter, input_mode: InputMode = "images",
        seed: int = 0, max_pixels: int = HUB_MAX_PIXELS,
    ) -> None:  # fmt: skip
        self.documents = documents
        self.counter = counter
        self.input_mode = input_mode
        self.seed = seed
        self.max_pixels = max_pixels
        self._page_costs: dict[str, list[int]] = {}
        self._images: OrderedDict[tuple[str, int], ImageInput] = OrderedDict()
        self._images_lock = threading.Lock()  # prompts are built in worker threads (run.py)
        self._generation_prompt = 1 + counter.count_texts(["assistant\n"])[0]  # <|im_start|> + "assistant\n"

    # ------------------------------------------------------------------------------------------ planning

    def plan(self, question: EvalQuestion, target_tokens: int) -> PromptPlan:
        """The padded prompt of `question` at `target_tokens`, its exact length at most the target."""
        relevant = self.documents[question.doc_id]
        alone = PromptPlan(question.id, target_tokens, 0, [(relevant.id, relevant.num_pages)])
        alone.prompt_tokens = self.count(question, alone)
        if alone.prompt_tokens > target_tokens:
            alone.skipped = "document_too_long"
            return alone
        picked, exhausted = self._fill(question, target_tokens - alone.prompt_tokens)
        plan = self._arrange(question, target_tokens, picked)
        while plan.prompt_tokens > target_tokens and picked:  # estimates are per page; the exact count decides
            picked = _drop_last_page(picked)
            plan, exhausted = self._arrange(question, target_tokens, picked), False
        plan.padding_exhausted = exhausted
        return plan

    def negatives(self, question: EvalQuestion) -> list[str]:
        """The split's other documents in this question's deterministic shuffle."""
        others = [doc_id for doc_id in self.documents if doc_id != question.doc_id]
        return sorted(others, key=lambda doc_id: unit_draw(self.seed, f"{question.id}:{doc_id}"))

    def _fill(self, question: EvalQuestion, budget_tokens: int) -> tuple[list[tuple[str, int]], bool]:
        """(doc_id, pages) taken in shuffle order until the next page would pass the budget; True if all fit."""
        picked: list[tuple[str, int]] = []
        for doc_id in self.negatives(question):
            taken = 0
            for cost in self.page_costs(doc_id):
                if cost > budget_tokens:
                    break
                budget_tokens -= cost
                taken += 1
            if taken:
                picked.append((doc_id, taken))
            if taken < self.documents[doc_id].num_pages:
                return picked, False
        return picked, True

    def _arrange(self, question: EvalQuestion, target_tokens: int, picked: list[tuple[str, int]]) -> PromptPlan:
        """Insert the relevant document at the boundary nearest its drawn depth; count the result exactly."""
        relevant = self.documents[question.doc_id]
        costs = [sum(self.page_costs(doc_id)[:n]) for doc_id, n in picked]
        total = sum(costs)
        wanted = unit_draw(self.seed, f"depth:{question.id}") * total
        before = [sum(costs[:i]) for i in range(len(picked) + 1)]
        index = min(range(len(before)), key=lambda i: (abs(before[i] - wanted), i))
        blocks = picked[:index] + [(relevant.id, relevant.num_pages)] + picked[index:]
        content = total + sum(self.page_costs(relevant.id))
        plan = PromptPlan(question.id, target_tokens, 0, blocks, index, round(before[index] / content, 4))
        plan.prompt_tokens = self.count(question, plan)
        return plan

    def page_costs(self, doc_id: str) -> list[int]:
        """Tokens each page adds to a prompt (its label and image, or its label and text), cached per document."""
        if doc_id not in self._page_costs:
            doc = self.documents[doc_id]
            pages = range(1, doc.num_pages + 1)
            if self.input_mode == "images":
                labels = self.counter.count_runs([["\n" + page_label(doc.name, page)] for page in pages])
                images = [self.counter.image_tokens(w, h) for w, h in doc.page_sizes_px]
                self._page_costs[doc_id] = [a + b for a, b in zip(labels, images, strict=True)]
            else:
                self._page_costs[doc_id] = self.counter.count_texts(["\n\n" + _page_text(doc, p) for p in pages])
        return self._page_costs[doc_id]

    def count(self, question: EvalQuestion, plan: PromptPlan) -> int:
        """Exact Qwen2.5-VL length of the prompt, generation prompt included."""
        content = self._content(question, plan, wire=False)
        image_tokens = 0
        if self.input_mode == "images":
            image_tokens = sum(
                self.counter.image_tokens(*self.documents[doc_id].page_sizes_px[page - 1])
                for doc_id, n in plan.blocks
                for page in range(1, n + 1)
            )
        chat = [{"role": "user", "content": content}]
        return self.counter.count_chats([chat], [image_tokens])[0] + self._generation_prompt

    # ------------------------------------------------------------------------------------------ messages

    def messages(self, question: EvalQuestion, plan: PromptPlan) -> list[Message]:
        """The chat messages sent to the model (images as ImageInput, encoded only when sent)."""
        return [{"role": "user", "content": self._content(question, plan, wire=True)}]

    def _content(self, question: EvalQuestion, plan: PromptPlan, wire: bool) -> Any:
        relevant = self.documents[question.doc_id]
        head = ANSWER_INSTRUCTION + "\n\n"
        tail = question_line(relevant.name, question.question)
        if self.input_mode == "text":
            pages = [_page_text(self.documents[d], p) for d, n in plan.blocks for p in range(1, n + 1)]
            return head + "\n\n".join(pages) + "\n\n" + tail
        parts: list[dict[str, Any]] = []
        pending = head
        for doc_id, n in plan.blocks:
            doc = self.documents[doc_id]
            for page in range(1, n + 1):
                parts.append(_text(pending + page_label(doc.name, page), wire))
                parts.append(image_part(self._image(doc, page)) if wire else {"type": "image"})
                pending = "\n"
        parts.append(_text("\n" + tail, wire))
        return parts

    def _image(self, doc: EvalDocument, page: int) -> ImageInput:
        """One ImageInput per page (its JPEG data URL encoded once), the most recent few hundred kept."""
        key = (doc.id, page)
        with self._images_lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        image = ImageInput(doc.image(page), self.max_pixels)  # rendered outside the lock
        with self._images_lock:
            image = self._images.setdefault(key, image)
            self._images.move_to_end(key)
            if len(self._images) > _IMAGE_CACHE:
                self._images.popitem(last=False)
        return image


def _text(text: str, wire: bool) -> dict[str, Any]:
    return text_part(text) if wire else {"type": "text", "text": text}


def _page_text(doc: EvalDocument, page: int) -> str:
    if doc.text is None:
        raise ValueError(f"document {doc.name}: no page text (text input needs the PDFs)")
    return page_label(doc.name, page).rstrip() + "\n" + doc.text(page).strip()


def _drop_last_page(picked: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    doc_id, n = picked[-1]
    return [*picked[:-1], (doc_id, n - 1)] if n > 1 else list(picked[:-1])
