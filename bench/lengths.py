"""Benchmark: exact Qwen2.5-VL lengths of full-document examples, batched path vs a naive per-example path.

    .venv/bin/python bench/lengths.py [--docs 10000] [--naive 500]

Synthetic documents with real page sizes (US-Letter from the bundled PDFs, TeX A4, a Beamer slide), 32-50 pages,
one QA each. The fast path is `assemble.document_candidates` (page sizes -> cached image tokens; text runs tokenised
in batches). The naive path, measured in the same run on a subset, does what a straightforward script would:
per page pixmap size + smart_resize, messages built, TRL's qwen2_5_vl.jinja rendered with Jinja, one tokenizer call
per example. Both must agree on every length. Memory: tracemalloc's peak while assembling N and 2N QAs, per QA.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
import tracemalloc
from pathlib import Path

from longdocvqa.assembly import assemble as asm
from longdocvqa.assembly import tokens
from longdocvqa.core.recipe import AssembleConfig
from longdocvqa.core.records import PdfDoc, QARecord

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("extract-single", "extract-multi", "reasoning")


def page_sizes() -> list[tuple[float, float]]:
    import pymupdf

    sizes = {(595.2760009765625, 841.8900146484375), (362.8349914550781, 272.1260070800781)}
    for path in sorted((ROOT / "tests" / "data" / "pdfs").glob("*.pdf")):
        with pymupdf.open(path) as doc:
            sizes |= {(p.rect.width, p.rect.height) for p in doc}
    return sorted(sizes)


def make_inputs(num_docs: int, seed: int = 0) -> tuple[dict[str, PdfDoc], list[QARecord]]:
    rng = random.Random(seed)
    shapes = page_sizes()
    docs, qas = {}, []
    for index in range(num_docs):
        pages = rng.randint(32, 50)
        sha = hashlib.sha256(f"bench-{seed}-{index}".encode()).hexdigest()
        docs[sha] = PdfDoc(sha256=sha, path=f"/pool/{index}.pdf", size_bytes=1, num_pages=pages,
                           page_sizes_pt=[rng.choice(shapes)] * pages)  # fmt: skip
        task = TASKS[index % 3]
        answer = ["first item", f"second {index}"] if task == "extract-multi" else f"{rng.random() * 1000:.2f} MW"
        qas.append(QARecord(
            id=hashlib.sha256(f"qa-{seed}-{index}".encode()).hexdigest(), task=task, doc_sha256=sha,
            segment_id="seg", segment_start=3, segment_end=14, segment_sections=["Results"],
            question=f"According to the table on Page {rng.randint(1, pages)}, what was the output in {2000 + index}?",
            answer=answer, answer_format="List" if task == "extract-multi" else "String", evidence_pages=[3],
            evidence_sources=["Table"], generator="bench", prompt_version="v1",
        ))  # fmt: skip
    return docs, qas


class TimedCounter(tokens.TokenCounter):
    """Adds up the time spent inside the tokenizer (batched encodes of the text runs)."""

    tokenize_s = 0.0

    def count_texts(self, texts):
        start = time.perf_counter()
        try:
            return super().count_texts(texts)
        finally:
            self.tokenize_s += time.perf_counter() - start


def fast_lengths(docs, qas, config, counter) -> tuple[dict[str, int], float, float]:
    """Lengths through the batched path; returns (length per QA id, image seconds, total seconds)."""
    tokens.page_image_tokens.cache_clear()
    tokens.image_tokens.cache_clear()
    counter._run_tokens.clear()
    start = time.perf_counter()
    for doc in docs.values():
        counter.page_tokens(doc.page_sizes_pt, 144)
    image_s = time.perf_counter() - start
    tokens.page_image_tokens.cache_clear()
    tokens.image_tokens.cache_clear()
    start = time.perf_counter()
    config = config.model_copy(update={"min_tokens": 1, "max_tokens": 10**9})  # measure everything, drop nothing
    candidates, _ = asm.document_candidates(docs, qas, lambda s: None, config, render_dpi=144, seed=0, counter=counter)
    total_s = time.perf_counter() - start
    return {c.qa.id: c.num_tokens for c in candidates if c.qa}, image_s, total_s


def naive_lengths(docs, qas, config, counter) -> tuple[dict[str, int], float]:
    import jinja2
    import trl

    template = jinja2.Environment().from_string(
        (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja").read_text()
    )
    start = time.perf_counter()
    lengths = {}
    for qa in qas:
        doc = docs[qa.doc_sha256]
        messages = asm.example_messages(qa, doc.num_pages, config)
        text = template.render(messages=messages, add_generation_prompt=False)
        ids = counter.tokenizer.encode(text, add_special_tokens=False).ids
        pads = 0
        for width_pt, height_pt in doc.page_sizes_pt:
            width, height = tokens.pixmap_size_px(width_pt, height_pt, 144)
            h_bar, w_bar = tokens.smart_resize(height, width, 28, config.min_pixels, config.max_pixels)
            pads += (h_bar // 28) * (w_bar // 28) - 1  # the <|image_pad|> already counted once in `ids`
        lengths[qa.id] = len(ids) + pads
    return lengths, time.perf_counter() - start


def peak_bytes(docs, qas, config, counter) -> int:
    tracemalloc.start()
    result = asm.assemble(docs, qas, lambda s: None, config, render_dpi=144, seed=0, counter=counter)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=1_000, help="documents measured on the naive path")
    args = parser.parse_args()
    counter = TimedCounter(tokens.load_tokenizer(AssembleConfig().tokenizer))
    config = AssembleConfig()
    docs, qas = make_inputs(args.docs)
    lengths, image_s, total_s = fast_lengths(docs, qas, config, counter)
    tokenize_s, counter.tokenize_s = counter.tokenize_s, 0.0
    subset = qas[: args.naive]
    naive, naive_s = naive_lengths(docs, subset, config, counter)
    assert all(naive[qa.id] == lengths[qa.id] for qa in subset), "naive and batched lengths disagree"
    pages = sum(doc.num_pages for doc in docs.values())
    fast_rate, naive_rate = len(qas) / total_s, len(subset) / naive_s
    print(f"documents: {len(docs):,} ({pages:,} pages), one QA each; {len(subset):,} checked equal on the naive path")
    print(f"image tokens only (page sizes, smart_resize, cached): {image_s:.3f} s = {len(docs) / image_s:,.0f} docs/s")
    print(
        f"full lengths, batched (images + batched text runs):   {total_s:.3f} s = {fast_rate:,.0f} docs/s, of which "
        f"{tokenize_s:.3f} s in the tokenizer and {total_s - tokenize_s:.3f} s everything else"
    )
    print(f"full lengths, naive (per page, Jinja, one encode each): {naive_s:.3f} s = {naive_rate:,.0f} docs/s")
    print(f"speed-up: {fast_rate / naive_rate:.1f}x")
    half = dict(list(docs.items())[: len(docs) // 2])
    small = peak_bytes(half, [qa for qa in qas if qa.doc_sha256 in half], config, counter)
    large = peak_bytes(docs, qas, config, counter)
    per_qa = (large - small) / (len(qas) - len(qas) // 2)
    print(
        f"assemble peak memory (tracemalloc): {small / 2**20:.1f} MiB for {len(qas) // 2:,} QAs, "
        f"{large / 2**20:.1f} MiB for {len(qas):,}: {per_qa:,.0f} bytes per extra QA (no images, no messages)"
    )


if __name__ == "__main__":
    main()
