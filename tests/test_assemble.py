"""assemble.py: message format, exact lengths, the window filter, distributions, mixture, budget, short data,
determinism, statistics, the dry-run plan and the ablation recipes.

Page sizes come from the bundled real PDFs (US-Letter) plus A4 and a Beamer slide as real TeX documents write them;
documents and QAs are synthetic records, the tokenizer is the real Qwen2 vocabulary."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import pytest
from test_charts import data_under_legend

from longdocvqa.assembly import assemble as asm
from longdocvqa.assembly import stats as assembly_stats
from longdocvqa.assembly import tokens
from longdocvqa.core.errors import StageError
from longdocvqa.core.recipe import AssembleConfig, load_recipe
from longdocvqa.core.records import Block, LayoutDoc, Page, PdfDoc, QARecord

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT / "tests" / "data" / "pdfs"
TASKS = ("extract-single", "extract-multi", "reasoning")
A4 = (595.2760009765625, 841.8900146484375)  # page.rect of a TeX A4 page (float32 values)
SLIDE = (362.8349914550781, 272.1260070800781)


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> tokens.TokenCounter:
    if tokens.dashscope_tiktoken_path() is None:
        pytest.skip(f"no offline Qwen2 vocabulary: {tokens.DASHSCOPE_FIX}")
    return tokens.TokenCounter.load(cache=tmp_path_factory.mktemp("tokcache"))


@pytest.fixture(scope="module")
def letter() -> tuple[float, float]:
    import pymupdf

    with pymupdf.open(PDFS / "R-FAQ.pdf") as doc:
        return doc[0].rect.width, doc[0].rect.height


def make_doc(key: str, num_pages: int, size: tuple[float, float]) -> PdfDoc:
    sha = hashlib.sha256(key.encode()).hexdigest()
    return PdfDoc(sha256=sha, path=f"/pool/{key}.pdf", size_bytes=1000, num_pages=num_pages,
                  page_sizes_pt=[size] * num_pages)  # fmt: skip


def make_qa(doc: PdfDoc, task: str, question: str = "What is reported on Page 3?", answer: object = "42",
            evidence: list[int] | None = None) -> QARecord:  # fmt: skip
    fields = {"task": task, "doc": doc.sha256, "question": question, "answer": answer}
    return QARecord(
        id=hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest(), task=task,
        doc_sha256=doc.sha256, segment_id="seg", segment_start=1, segment_end=min(10, doc.num_pages),
        segment_sections=["Intro"], question=question, answer=answer,
        answer_format="List" if isinstance(answer, list) else "String", evidence_pages=evidence or [1],
        evidence_sources=["Text"], generator="test", prompt_version="v1",
    )  # fmt: skip


def make_pool(letter: tuple[float, float], num_docs: int, seed: int = 0, pages: tuple[int, int] = (12, 53),
              tasks: tuple[str, ...] = TASKS) -> tuple[dict[str, PdfDoc], list[QARecord]]:  # fmt: skip
    """Documents of mixed page sizes and counts (some outside the window), one QA per task per document."""
    rng = random.Random(seed)
    docs, qas = {}, []
    for index in range(num_docs):
        size = rng.choice([letter, letter, A4, SLIDE])
        doc = make_doc(f"doc-{seed}-{index}", rng.randint(*pages) * (3 if size == SLIDE else 1), size)
        docs[doc.sha256] = doc
        for task in tasks:
            answer = ["alpha", f"beta {index}"] if task == "extract-multi" else f"value {rng.random():.6f}"
            qas.append(make_qa(doc, task, f"What does Page {rng.randint(1, doc.num_pages)} say about item {index}?",
                               answer))  # fmt: skip
    return docs, qas


def no_layouts(sha: str) -> LayoutDoc:
    raise KeyError(sha)


def run(docs, qas, config, counter, seed=0, short_rows=None) -> asm.Assembly:
    return asm.assemble(docs, qas, no_layouts, config, render_dpi=144, seed=seed, counter=counter,
                        short_rows=short_rows)  # fmt: skip


# ---------------------------------------------------------------------------------------------- format


def test_messages_follow_trl_conversational_vision_format(letter) -> None:
    doc = make_doc("fmt", 3, letter)
    qa = make_qa(doc, "extract-multi", answer=["a", "b, c"])
    user, assistant = asm.example_messages(qa, 3, AssembleConfig())
    assert user["role"] == "user" and assistant["role"] == "assistant"
    assert user["content"] == [
        {"type": "text", "text": "Page 1: "}, {"type": "image", "text": None},
        {"type": "text", "text": "\nPage 2: "}, {"type": "image", "text": None},
        {"type": "text", "text": "\nPage 3: "}, {"type": "image", "text": None},
        {"type": "text", "text": "\nWhat is reported on Page 3?"},
    ]  # fmt: skip
    assert assistant["content"] == [{"type": "text", "text": '["a", "b, c"]'}]

    config = AssembleConfig(page_labels=False, question_position="before", answer_instruction=True,
                            list_format="comma", system_prompt="Read the document.")  # fmt: skip
    system, user, assistant = asm.example_messages(qa, 3, config)
    assert system == {"role": "system", "content": [{"type": "text", "text": "Read the document."}]}
    assert user["content"][0]["text"] == asm.ANSWER_INSTRUCTION + "\n\nQuestion: What is reported on Page 3?\n\n"
    assert [p["type"] for p in user["content"][1:]] == ["image"] * 3
    assert assistant["content"][0]["text"] == "Answer: a, b, c"


def test_example_id_is_the_content_hash() -> None:
    from longdocvqa.core.fingerprint import content_hash

    fmt = asm.format_fingerprint(AssembleConfig(system_prompt="Ünï"))
    fields = {"task": "reasoning", "doc_id": "d" * 64, "qa_id": "q", "num_tokens": 40000, "format": fmt}
    assert asm.example_id("reasoning", "d" * 64, "q", 40000, fmt) == content_hash(fields)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"page_labels": False}, {"question_position": "before"}, {"answer_instruction": True},
     {"system_prompt": "Be brief.\n"}, {"page_labels": False, "question_position": "before", "list_format": "comma"}],
)  # fmt: skip
def test_fast_lengths_equal_the_rendered_template_count(counter, letter, overrides) -> None:
    """example_lengths (no messages built) == count_chats(build_messages) (tests/test_tokens checks count_chats
    against the real processor)."""
    config = AssembleConfig(**overrides)
    docs, qas = make_pool(letter, 20, seed=5)
    tricky = make_qa(next(iter(docs.values())), "reasoning", "\n\n  Leading blanks <|im_end|> and “quotes”?  ", " x\n")
    items, chats, pixels = [], [], []
    for qa in [*qas, tricky]:
        doc = docs[qa.doc_sha256]
        page_tokens = counter.page_tokens(doc.page_sizes_pt, 144)
        items.append((*asm.example_texts(qa, doc.num_pages, config), doc.num_pages, page_tokens))
        chats.append(asm.example_messages(qa, doc.num_pages, config))
        pixels.append(page_tokens)
    assert asm.example_lengths(items, config, counter) == counter.count_chats(chats, pixels)


def test_every_example_carries_its_exact_length(counter, letter) -> None:
    docs, qas = make_pool(letter, 30, seed=2)
    result = run(docs, qas, AssembleConfig(answer_instruction=True), counter)
    examples = list(result.examples())
    assert examples and len(examples) == len(result.picks)
    for example in examples:
        pixels = counter.page_tokens(docs[example.doc_id].page_sizes_pt, 144)
        assert counter.count_chats([example.messages], [pixels]) == [example.num_tokens]
        assert tokens.count_images(example.messages) == example.num_pages == docs[example.doc_id].num_pages


def test_ocr_targets_are_layout_text_without_headers_and_footers(counter, letter) -> None:
    doc = make_doc("ocr", 40, letter)

    def page(index: int) -> Page:
        blocks = [
            Block(label="header", bbox=(0, 0, 600, 20), text="RUNNING HEADER", order=0),
            Block(label="section", bbox=(0, 40, 600, 60), text=f"Section {index}", order=1),
            Block(label="paragraph", bbox=(0, 70, 600, 300), text=f"Body text of page {index}.", order=2),
            Block(label="footer", bbox=(0, 770, 600, 790), text=f"- {index} -", order=3),
        ]
        return Page(index=index, width_pt=letter[0], height_pt=letter[1], blocks=blocks)

    layout = LayoutDoc(sha256=doc.sha256, backend="heuristic", num_pages=40, pages=[page(i) for i in range(1, 41)])
    needle = make_qa(doc, "ocr-needle", "Transcribe Page 7 and Page 9.", "", evidence=[9, 7])
    full = make_qa(doc, "ocr-full", "Transcribe every page.", "", evidence=[1])
    config = AssembleConfig(mixture={"ocr-needle": 0.5, "ocr-full": 0.5})
    result = asm.assemble({doc.sha256: doc}, [needle, full], lambda sha: layout, config, render_dpi=144, seed=0,
                          counter=counter)  # fmt: skip
    by_task = {example.task: example for example in result.examples()}
    answer = by_task["ocr-needle"].messages[-1]["content"][0]["text"]
    assert answer == "Page 7:\nSection 7\nBody text of page 7.\n\nPage 9:\nSection 9\nBody text of page 9."
    full_answer = by_task["ocr-full"].messages[-1]["content"][0]["text"]
    assert full_answer.count("Body text of page") == 40
    assert "RUNNING HEADER" not in full_answer and "- 3 -" not in full_answer
    for example in by_task.values():
        pixels = counter.page_tokens(doc.page_sizes_pt, 144)
        assert counter.count_chats([example.messages], [pixels]) == [example.num_tokens]
    assert by_task["ocr-full"].num_tokens > by_task["ocr-needle"].num_tokens


# ---------------------------------------------------------------------------------------------- window


def _qa_of_length(doc: PdfDoc, target: int, config: AssembleConfig, counter: tokens.TokenCounter) -> QARecord:
    """A QA whose full-document example is exactly `target` tokens long: the answer is padded with " x" tokens."""
    words = 1
    for _ in range(6):
        qa = make_qa(doc, "extract-single", answer=" ".join(["x"] * words))
        pixels = counter.page_tokens(doc.page_sizes_pt, 144)
        item = (*asm.example_texts(qa, doc.num_pages, config), doc.num_pages, pixels)
        length = asm.example_lengths([item], config, counter)[0]
        if length == target:
            return qa
        words += target - length
    raise AssertionError(f"could not hit {target} tokens")


def test_window_keeps_exact_boundaries_and_drops_one_past(counter, letter) -> None:
    config = AssembleConfig()
    per_page = counter.page_tokens([letter], 144) + 5
    docs, qas = {}, []
    for target in (config.min_tokens - 1, config.min_tokens, config.max_tokens, config.max_tokens + 1):
        doc = make_doc(f"boundary-{target}", (target - 400) // per_page, letter)
        docs[doc.sha256] = doc
        qas.append(_qa_of_length(doc, target, config, counter))
    result = run(docs, qas, config, counter)
    kept = sorted(pick.num_tokens for pick in result.picks)
    assert kept == [32768, 131072]
    dropped = {reject.reason: reject.extra["num_tokens"] for reject in result.rejects}
    assert dropped == {"too_short": 32767, "too_long": 131073}
    assert all(reject.stage == "assemble" for reject in result.rejects)


def test_broken_inputs_become_rejects(counter, letter) -> None:
    doc = make_doc("ok", 40, letter)
    good = make_qa(doc, "reasoning")
    orphan = make_qa(make_doc("gone", 40, letter), "reasoning")
    outside = make_qa(doc, "extract-single", evidence=[41])
    ocr = make_qa(doc, "ocr-needle", "Transcribe Page 2.", "", evidence=[2])
    result = run({doc.sha256: doc}, [good, good, orphan, outside, ocr], AssembleConfig(), counter)
    reasons = sorted(reject.reason for reject in result.rejects)
    assert reasons == ["duplicate", "evidence_out_of_range", "layout_missing", "missing_document"]
    assert [pick.qa.id for pick in result.picks if pick.qa] == [good.id]


# ---------------------------------------------------------------------------------------------- mixture and budget


def _task_tokens(result: asm.Assembly) -> dict[str, int]:
    totals: dict[str, int] = {}
    for pick in result.picks:
        totals[pick.task] = totals.get(pick.task, 0) + pick.num_tokens
    return totals


def test_mixture_shares_within_one_example_and_budget_respected(counter, letter) -> None:
    docs, qas = make_pool(letter, 300, seed=1)
    pool_tokens = sum(
        c.num_tokens
        for c in asm.document_candidates(
            docs, qas, no_layouts, AssembleConfig(), render_dpi=144, seed=0, counter=counter
        )[0]
    )
    budget = pool_tokens // 3
    config = AssembleConfig(budget_tokens=budget)
    result = run(docs, qas, config, counter)
    total = sum(pick.num_tokens for pick in result.picks)
    assert budget - config.max_tokens < total <= budget
    longest = max(pick.num_tokens for pick in result.picks)
    for task, tokens_used in _task_tokens(result).items():
        assert abs(tokens_used - config.mixture[task] * total) <= longest, task
    assert result.stats.shortfall is None
    assert result.stats.tokens == total
    assert abs(result.stats.per_task["reasoning"].token_share - 0.2) <= longest / total


def test_mixture_by_examples(counter, letter) -> None:
    docs, qas = make_pool(letter, 300, seed=3)
    config = AssembleConfig(budget_tokens=10_000_000, mixture_unit="examples",
                            mixture={"extract-single": 0.5, "extract-multi": 0.25, "reasoning": 0.25})  # fmt: skip
    result = run(docs, qas, config, counter)
    counts = {task: stats.examples for task, stats in result.stats.per_task.items()}
    total = sum(counts.values())
    for task, share in config.mixture.items():
        assert abs(counts[task] - share * total) <= 1, counts
    assert result.stats.tokens <= 10_000_000


def test_shortfall_stops_with_the_amount_or_rescales(counter, letter) -> None:
    docs, qas = make_pool(letter, 120, seed=4)
    qas = [qa for i, qa in enumerate(qas) if qa.task != "reasoning" or i % 9 == 0]  # few reasoning QAs
    config = AssembleConfig(budget_tokens=20_000_000, on_shortfall="stop")
    with pytest.raises(StageError, match=r"reasoning has [\d,]+ of the 4,000,000 tokens its 20% share needs "
                                         r"\(short by [\d,]+\)"):  # fmt: skip
        run(docs, qas, config, counter)
    config.on_shortfall = "rescale"
    result = run(docs, qas, config, counter)
    assert result.stats.shortfall and result.stats.shortfall.startswith("rescaled: reasoning has")
    total = result.stats.tokens
    assert total < 20_000_000
    longest = max(pick.num_tokens for pick in result.picks)
    for task, tokens_used in _task_tokens(result).items():
        assert abs(tokens_used - config.mixture[task] * total) <= longest


def test_no_budget_keeps_every_candidate(counter, letter) -> None:
    docs, qas = make_pool(letter, 40, seed=6)
    result = run(docs, qas, AssembleConfig(), counter)
    rejected = sum(result.stats.rejects.values())
    assert len(result.picks) + rejected == len(qas)
    assert result.stats.pool == {task: {"examples": s.examples, "tokens": s.tokens}
                                 for task, s in result.stats.per_task.items()}  # fmt: skip


# ---------------------------------------------------------------------------------------------- distributions


def test_pool_native_keeps_the_spread_and_long_biased_concentrates_at_the_top(counter, letter) -> None:
    docs, qas = make_pool(letter, 600, seed=8)
    native = AssembleConfig(budget_tokens=60_000_000)
    biased = AssembleConfig(budget_tokens=60_000_000, distribution="long-biased")
    pool = asm.document_candidates(docs, qas, no_layouts, native, render_dpi=144, seed=0, counter=counter)[0]
    picks = {name: run(docs, qas, config, counter).picks for name, config in (("native", native), ("biased", biased))}

    def rate(selected, lo: float, hi: float) -> float:
        """Share of the pool's candidates with a length in [lo, hi) of the window that were selected."""
        span = native.max_tokens - native.min_tokens
        inside = {c.id for c in pool if lo <= (c.num_tokens - native.min_tokens) / span < hi}
        return len(inside & {c.id for c in selected}) / len(inside)

    pool_mean = sum(c.num_tokens for c in pool) / len(pool)
    native_mean = sum(c.num_tokens for c in picks["native"]) / len(picks["native"])
    biased_mean = sum(c.num_tokens for c in picks["biased"]) / len(picks["biased"])
    assert abs(native_mean - pool_mean) / pool_mean < 0.05  # natural spread
    assert 0.6 < rate(picks["native"], 0.75, 1.01) / rate(picks["native"], 0, 0.25) < 1.6
    assert rate(picks["biased"], 0.75, 1.01) / rate(picks["biased"], 0, 0.25) > 3  # weight e^(4x): top first
    assert biased_mean > native_mean * 1.1

    stats = {name: assembly_stats.compute_stats(p, pool, [], native) for name, p in picks.items()}
    assert stats["biased"].share_ge_100k > stats["native"].share_ge_100k + 0.1
    native_hist = stats["native"].length_histogram
    assert 20 <= len(native_hist.edges) - 1 <= 40  # bins across the observed range, inside the window
    width = native_hist.edges[1] - native_hist.edges[0]
    assert native.min_tokens - width <= native_hist.edges[0] and native_hist.edges[-1] <= native.max_tokens + width
    assert sum(map(sum, native_hist.counts.values())) == len(picks["native"])


def test_target_histogram_shares(counter, letter) -> None:
    docs, qas = make_pool(letter, 500, seed=9)
    target = {"32K-64K": 0.5, "64K-96K": 0.25, "96K-128K": 0.25}
    config = AssembleConfig(budget_tokens=30_000_000, distribution="target", target=target)
    result = run(docs, qas, config, counter)
    total = result.stats.tokens
    per_bin: dict[int, int] = {}
    for pick in result.picks:
        index = next(i for i, (lo, hi, _) in enumerate(config.target_bins())
                     if lo <= pick.num_tokens < hi or (i == 2 and pick.num_tokens == hi))  # fmt: skip
        per_bin[index] = per_bin.get(index, 0) + pick.num_tokens
    shares = [share for _, _, share in config.target_bins()]
    for index, share in enumerate(shares):  # one stream per task and bin: at most one example each off
        assert abs(per_bin[index] - share * total) <= 3 * config.max_tokens


# ---------------------------------------------------------------------------------------------- short data


def _short_rows(count: int) -> list[dict]:
    from PIL import Image

    rows: list[dict] = []
    rng = random.Random(11)
    for index in range(count):
        size = (rng.randint(300, 1400), rng.randint(300, 1400))
        if index % 50 == 0:  # a few real images (PIL and encoded), the rest as sizes
            buffer = io.BytesIO()
            Image.new("RGB", size, "white").save(buffer, format="PNG")
            image: object = {"bytes": buffer.getvalue(), "path": None} if index % 100 else Image.new("RGB", size)
        else:
            image = size
        if index % 3 == 0:
            rows.append(
                {
                    "image": image,
                    "conversations": [
                        {"from": "human", "value": f"<image>\nWhat is shown? ({index})"},
                        {"from": "gpt", "value": "A chart."},
                    ],
                }
            )
        else:
            rows.append(
                {
                    "images": [image],
                    "messages": [
                        {"role": "user", "content": f"Describe image {index}."},
                        {"role": "assistant", "content": "Text."},
                    ],
                }
            )
    return rows  # fmt: skip


def test_short_data_share_and_pass_through(counter, letter) -> None:
    docs, qas = make_pool(letter, 60, seed=12)
    rows = _short_rows(1500)
    config = AssembleConfig(budget_tokens=3_000_000)
    config.short_data.share = 0.4
    result = run(docs, qas, config, counter, short_rows=rows)
    short = [p for p in result.picks if p.task == asm.SHORT_TASK]
    long_tokens = sum(p.num_tokens for p in result.picks if p.task != asm.SHORT_TASK)
    short_tokens = sum(p.num_tokens for p in short)
    assert short and long_tokens + short_tokens <= 3_000_000
    assert abs(short_tokens - long_tokens * 0.4 / 0.6) <= max(p.num_tokens for p in short)
    for example in result.examples():
        if example.task == asm.SHORT_TASK:
            row = asm.normalise_short_row(rows[example.short_index])
            assert example.messages == row["messages"] and example.doc_id == "" and example.qa_id == ""
            sizes = [tokens.image_size_px(image) for image in row["images"]]
            pixels = sum(counter.image_tokens(w, h) for w, h in sizes)
            assert counter.count_chats([example.messages], [pixels]) == [example.num_tokens]
    assert list(result.qa_rows()) and all(row["num_tokens"] >= 32768 for row in result.qa_rows())


def test_short_rows_normalise_like_trl() -> None:
    llava = asm.normalise_short_row({"image": (10, 10), "conversations": [
        {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "This."}]})  # fmt: skip
    assert llava["messages"] == [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "\nWhat?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "This."}]},
    ]
    trl = asm.normalise_short_row({"images": [(1, 1), (2, 2)], "messages": [
        {"role": "user", "content": "Compare."}, {"role": "assistant", "content": "Same."}]})  # fmt: skip
    assert [p["type"] for p in trl["messages"][0]["content"]] == ["image", "image", "text"]


def test_short_share_without_short_rows_is_an_error(counter, letter) -> None:
    docs, qas = make_pool(letter, 5)
    config = AssembleConfig()
    config.short_data.share = 0.2
    with pytest.raises(StageError, match="no short data"):
        run(docs, qas, config, counter)


# ---------------------------------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_rebuild_is_byte_identical_whatever_the_input_order(counter, letter, tmp_path: Path) -> None:
    docs, qas = make_pool(letter, 150, seed=13)
    config = AssembleConfig(budget_tokens=8_000_000)
    config.short_data.share = 0.2
    rows = _short_rows(300)

    def build(order: list[QARecord], out: Path) -> tuple[str, str, bytes]:
        result = run(docs, order, config, counter, seed=42, short_rows=rows)
        examples = "\n".join(example.model_dump_json() for example in result.examples())
        png = assembly_stats.write_length_plots(result.stats, out)["length"].read_bytes()
        return examples, result.stats.model_dump_json(), png

    first = build(qas, tmp_path / "a")
    second = build(list(reversed(qas)), tmp_path / "b")
    assert first == second
    other_seed = run(docs, qas, config, counter, seed=43, short_rows=rows)
    assert [p.id for p in other_seed.picks] != [json.loads(line)["id"] for line in first[0].splitlines()]


# ---------------------------------------------------------------------------------------------- stats and plan


def test_stats_and_histogram_pngs(counter, letter, tmp_path: Path) -> None:
    docs, qas = make_pool(letter, 80, seed=14)
    result = run(docs, qas, AssembleConfig(), counter)
    stats = result.stats
    lengths = [p.num_tokens for p in result.picks]
    assert stats.examples == len(lengths) and stats.min_tokens == min(lengths) and stats.max_tokens == max(lengths)
    assert stats.share_ge_100k == sum(n >= 100_000 for n in lengths) / len(lengths)
    assert set(stats.per_task) == set(TASKS) and stats.rejects["too_short"] > 0
    paths = assembly_stats.write_length_plots(stats, tmp_path)
    for path in paths.values():
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000
    length, pages = (json.loads(paths[key].with_suffix(".json").read_text()) for key in ("length", "pages"))
    assert length["title"].startswith(
        f"Tokens per example: {stats.examples:,} examples, mean {stats.mean_tokens:,.0f}"
    )
    assert length["title"].endswith(f"{stats.share_ge_100k:.1%} >= 100K")  # the default window reaches 128K
    assert pages["title"] == f"Pages per example: {stats.examples:,} examples, mean {stats.mean_pages:.1f}"
    assert sum(length["totals"]) == sum(pages["totals"]) == stats.examples
    assert set(length["counts"]) == set(TASKS) and length["legend"]["placement"] == "outside right"
    assert data_under_legend(length) == [] and data_under_legend(pages) == []
    docs_used = list(result.documents())
    assert {d.sha256 for d in docs_used} == {p.doc_id for p in result.picks}


def test_plan_from_real_page_sizes(letter) -> None:
    import pymupdf

    docs = []
    for path in sorted(PDFS.glob("*.pdf")):
        with pymupdf.open(path) as pdf:
            sizes = [(p.rect.width, p.rect.height) for p in pdf]
        docs.append(PdfDoc(sha256=path.name, path=str(path), size_bytes=1, num_pages=len(sizes), page_sizes_pt=sizes))
    config = AssembleConfig(budget_tokens=1_000_000_000)
    result = assembly_stats.estimate_assembly(docs, config, render_dpi=144, qas_per_document=2)
    assert result.documents == len(docs)
    lengths = [tokens.document_image_tokens(d.page_sizes_pt, 144, 3136, 12845056) for d in docs]
    in_window = sum(32768 <= n <= 131072 for n in lengths)
    assert result.documents_in_window == in_window
    assert set(result.tasks) == set(TASKS)
    for task, plan in result.tasks.items():
        assert plan.candidates == 2 * in_window
        assert plan.expected_tokens == min(plan.candidate_tokens, int(config.mixture[task] * 1_000_000_000))
        assert plan.shortfall_tokens > 0  # three PDFs cannot fill a 1B budget


# ---------------------------------------------------------------------------------------------- recipes


ABLATIONS = sorted((ROOT / "recipes").glob("ablation-*.yaml"))


def test_ablation_recipes_cover_the_paper() -> None:
    names = {path.stem for path in ABLATIONS}
    expected = {"ablation-long-biased", "ablation-ocr-full", "ablation-ocr-needle"}
    expected |= {f"ablation-ratio-{e}-{10 - e}" for e in (0, 2, 4, 6, 10)}
    expected |= {f"ablation-short-{p}" for p in (20, 40, 60, 80)}
    assert expected <= names


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.name)
def test_ablation_recipe_validates_and_encodes_its_ablation(path: Path) -> None:
    recipe = load_recipe(path)
    a = recipe.assemble
    assert a.budget_tokens == 5_000_000_000 and a.min_tokens == 32768 and a.max_tokens == 131072
    assert recipe.render.dpi == 144
    assert set(recipe.generate.tasks) == {task for task, share in a.mixture.items() if share > 0}
    name = path.stem
    if name.startswith("ablation-ratio-"):
        extraction, reasoning = (int(x) / 10 for x in name.removeprefix("ablation-ratio-").split("-"))
        assert a.mixture.get("reasoning", 0) == pytest.approx(reasoning)
        assert a.mixture.get("extract-single", 0) == a.mixture.get("extract-multi", 0) == pytest.approx(extraction / 2)
    elif name.startswith("ablation-short-"):
        assert a.short_data.share == int(name.removeprefix("ablation-short-")) / 100
        assert a.short_data.path or a.short_data.repo
        assert a.mixture == {"extract-single": 0.4, "extract-multi": 0.4, "reasoning": 0.2}
    elif name == "ablation-long-biased":
        assert a.distribution == "long-biased" and (recipe.pool.min_pages, recipe.pool.max_pages) == (50, 100)
    elif name.startswith("ablation-ocr-"):
        assert a.mixture == {name.removeprefix("ablation-"): 1.0}
    if not name.startswith("ablation-short-"):
        assert a.short_data.share == 0
