"""Benchmark: planning length-controlled eval prompts (padding search + exact length) vs one naive exact count.

    .venv/bin/python bench/eval.py [--docs 200] [--questions 60] [--naive 30]

Synthetic documents with real page sizes (the bundled PDFs' pages, TeX A4, a Beamer slide), 32-50 pages, image input,
padded to 32K, 64K and 128K tokens. The fast path is `PromptBuilder.plan`: per-page token costs cached per document,
a greedy fill, then the exact count of the arranged prompt (text runs between added tokens tokenised once and
cached). The baseline, measured in the same run on a subset of the plans, counts only the final prompt the
straightforward way: render the chat template to one string, tokenise it in one call, replace each image
placeholder by its smart_resize token count. Both must agree on every length; a plan must cost less than one naive
count for the padding search to be free.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from longdocvqa.assembly import tokens
from longdocvqa.eval.data import EvalDocument, EvalQuestion
from longdocvqa.eval.prompt import PromptBuilder, PromptPlan

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (32768, 65536, 131072)


def page_sizes_px() -> list[tuple[int, int]]:
    import pymupdf

    sizes = {(595.2760009765625, 841.8900146484375), (362.8349914550781, 272.1260070800781)}
    for path in sorted((ROOT / "tests" / "data" / "pdfs").glob("*.pdf")):
        with pymupdf.open(path) as doc:
            sizes |= {(p.rect.width, p.rect.height) for p in doc}
    return sorted({tokens.pixmap_size_px(w, h, 144) for w, h in sizes})


def no_pixels(page: int) -> bytes:
    raise RuntimeError("planning never reads pixels")


def make_inputs(num_docs: int, num_questions: int, seed: int = 0) -> tuple[dict[str, EvalDocument], list]:
    rng = random.Random(seed)
    shapes = page_sizes_px()
    docs = {}
    for index in range(num_docs):
        pages = rng.randint(8, 50) if index % 4 else rng.randint(32, 50)
        docs[f"doc-{index}"] = EvalDocument(
            f"doc-{index}", f"report-{index:04d}", [rng.choice(shapes)] * pages, no_pixels
        )
    questions = [
        EvalQuestion(f"q{i}", f"doc-{i % num_docs}", f"What was the output in {2000 + i} per the table?", "12.5",
                     "Float", [3], "benchmark")
        for i in range(num_questions)
    ]  # fmt: skip
    return docs, questions


def naive_count(builder: PromptBuilder, question: EvalQuestion, plan: PromptPlan, counter: tokens.TokenCounter) -> int:
    """Render the template once, tokenise it in one call, swap each image placeholder for its tokens."""
    content = builder._content(question, plan, wire=False)
    text = tokens.render_chat([{"role": "user", "content": content}]) + "<|im_start|>assistant\n"
    ids = counter.tokenizer.encode(text, add_special_tokens=False).ids
    images = [builder.documents[d].page_sizes_px[p - 1] for d, n in plan.blocks for p in range(1, n + 1)]
    # each image renders as 3 added tokens; it counts as its pads plus the 2 markers
    return len(ids) - 3 * len(images) + sum(counter.image_tokens(w, h) for w, h in images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--naive", type=int, default=30)
    args = parser.parse_args()
    docs, questions = make_inputs(args.docs, args.questions)
    counter = tokens.TokenCounter.load()
    builder = PromptBuilder(docs, counter, "images")
    start = time.perf_counter()
    plans = [(q, builder.plan(q, length)) for length in LENGTHS for q in questions]
    plan_s = time.perf_counter() - start
    built = [(q, p) for q, p in plans if not p.skipped]
    sample = built[:: max(1, len(built) // args.naive)][: args.naive]
    start = time.perf_counter()
    naive = [naive_count(builder, q, p, counter) for q, p in sample]
    naive_s = time.perf_counter() - start
    assert naive == [p.prompt_tokens for _, p in sample], "the two counts disagree"
    gaps = [p.target_tokens - p.prompt_tokens for _, p in built if not p.padding_exhausted]
    pages = sum(p.num_pages for _, p in built) / max(1, len(built))
    print(f"{len(plans)} plans ({len(plans) - len(built)} skipped: document too long), {pages:.0f} pages per prompt")
    print(
        f"plan (search + exact count): {len(plans) / plan_s:,.1f} plans/s ({plan_s * 1000 / len(plans):.1f} ms each)"
    )
    print(f"naive exact count of the final prompt only: {len(sample) / naive_s:,.1f} prompts/s "
          f"({naive_s * 1000 / len(sample):.1f} ms each); agree on all {len(sample)}")  # fmt: skip
    print(f"ratio: a whole plan costs {plan_s / len(plans) / (naive_s / len(sample)):.2f}x one naive count")
    print(f"target - prompt tokens: max {max(gaps)}, mean {sum(gaps) / len(gaps):.0f} (a page is ~1-2.5K tokens)")


if __name__ == "__main__":
    main()
