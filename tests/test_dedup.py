"""Decontamination and near-duplicate removal on real PDFs (tests/data/pdfs) and variants made with PyMuPDF.

The benchmark folder holds (a) an exact copy of a pool PDF, (b) another pool PDF re-rendered with new metadata and a
new cover page, (c) a 10-page excerpt of a third pool PDF, (d) an unrelated document that shares one licence page
with a fourth pool PDF. (a) is caught by SHA-256, (b) and (c) by MinHash, (d) catches nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from dedup_helpers import copy, excerpt, page_images, rasterise, rerender, resave, with_page_of

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.fingerprint import file_sha256
from longdocvqa.core.recipe import BenchmarkSource, DecontaminateConfig
from longdocvqa.decontamination import dedup, minhash
from longdocvqa.documents.render import page_texts
from longdocvqa.hub.benchmarks import build_benchmark_index

BACKENDS = ["numpy", "datasketch", "rensa"]


def config_for(*sources: BenchmarkSource, **settings: object) -> DecontaminateConfig:
    return DecontaminateConfig(benchmarks=list(sources), **settings)


def pdf_source(name: str, path: Path | str) -> BenchmarkSource:
    return BenchmarkSource(name=name, kind="pdfs", path=str(path))


def pool_docs(paths: list[Path]) -> list[tuple[str, list[str]]]:
    return [(file_sha256(p), page_texts(p)) for p in paths]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, pdf_dir: Path) -> dict[str, Path]:
    """Pool PDFs and the benchmark folder (a)-(d) described in the module docstring."""
    root = tmp_path_factory.mktemp("dedup")
    pool = {
        "exact": copy(pdf_dir / "etoolbox.pdf", root / "pool" / "etoolbox.pdf"),
        "rerendered": copy(pdf_dir / "latexbug.pdf", root / "pool" / "latexbug.pdf"),
        "excerpted": copy(pdf_dir / "R-FAQ.pdf", root / "pool" / "R-FAQ.pdf"),
        "licence": copy(pdf_dir / "R-data.pdf", root / "pool" / "R-data.pdf"),
        "clean": copy(pdf_dir / "brief.pdf", root / "pool" / "brief.pdf"),
    }
    bench = root / "bench"
    copy(pool["exact"], bench / "a-exact.pdf")
    rerender(pool["rerendered"], bench / "b-rerendered.pdf")
    excerpt(pool["excerpted"], 21, 30, bench / "c-excerpt.pdf")
    with_page_of(pdf_dir / "ulineno.pdf", pool["licence"], 2, bench / "sub" / "d-unrelated.pdf")
    return {**pool, "bench": bench, "root": root}


@pytest.mark.parametrize("backend", BACKENDS)
def test_benchmark_variants_caught_by_the_right_rule(scenario: dict[str, Path], tmp_path: Path, backend: str) -> None:
    config = config_for(pdf_source("mmlb", scenario["bench"]), backend=backend)
    index = build_benchmark_index(config, tmp_path, page_texts)
    paths = [scenario[k] for k in ("exact", "rerendered", "excerpted", "licence", "clean")]
    kept, rejects, report = dedup.check_documents(index, pool_docs(paths), config, tmp_path)

    by_item = {r.item: r for r in rejects}
    sha = {k: file_sha256(scenario[k]) for k in ("exact", "rerendered", "excerpted", "licence", "clean")}
    assert by_item[sha["exact"]].reason == "bench_sha256"
    assert by_item[sha["exact"]].extra["benchmark_item"] == "a-exact.pdf"
    assert by_item[sha["rerendered"]].reason == "bench_near_dup"
    assert by_item[sha["rerendered"]].extra["benchmark_item"] == "b-rerendered.pdf"
    assert by_item[sha["excerpted"]].reason == "bench_near_dup"
    assert by_item[sha["excerpted"]].extra["benchmark_item"] == "c-excerpt.pdf"
    assert by_item[sha["excerpted"]].extra["pages"] == [21, 30]
    assert kept == {sha["licence"], sha["clean"]}  # (d) shares only a licence page with R-data: nothing caught
    assert all(r.stage == "decontaminate" and 0.7 <= r.extra["similarity"] <= 1.0 for r in rejects)
    dropped = report["benchmarks"]["mmlb"]["dropped"]  # type: ignore[index]
    assert dropped["bench_sha256"] == {"count": 1, "benchmark_ids": ["a-exact.pdf"]}
    assert dropped["bench_near_dup"] == {"count": 2, "benchmark_ids": ["b-rerendered.pdf", "c-excerpt.pdf"]}


def test_pool_excerpt_of_a_benchmark_is_caught(scenario: dict[str, Path], tmp_path: Path) -> None:
    """The other direction: the pool PDF is a 12-page excerpt of a longer benchmark PDF."""
    bench = copy(scenario["excerpted"], tmp_path / "bench" / "faq.pdf")
    pool_pdf = excerpt(scenario["excerpted"], 31, 42, tmp_path / "pool" / "faq-part.pdf")
    config = config_for(pdf_source("long", bench))
    index = build_benchmark_index(config, tmp_path / "cache", page_texts)
    kept, rejects, _ = dedup.check_documents(index, pool_docs([pool_pdf]), config, tmp_path / "cache")
    assert not kept
    assert rejects[0].reason == "bench_near_dup" and rejects[0].extra["benchmark_item"] == "faq.pdf"


def test_one_shared_page_is_far_below_the_threshold(scenario: dict[str, Path], tmp_path: Path) -> None:
    settings = minhash.SignatureSettings()
    pool = minhash.page_signatures(page_texts(scenario["licence"]), settings)
    unrelated = minhash.page_signatures(page_texts(scenario["bench"] / "sub" / "d-unrelated.pdf"), settings)
    assert minhash.estimate_jaccard(pool.values[1], unrelated.values[1])[0] == 1.0  # the shared licence page itself
    best = max(
        minhash.estimate_jaccard(a, b)[0] for _, _, a in pool.spans(10) for _, _, b in unrelated.spans(10)
    )  # fmt: skip
    assert best < 0.2


def test_index_and_pool_signatures_are_cached(scenario: dict[str, Path], tmp_path: Path) -> None:
    calls: list[Path] = []

    def counting_texts(path: Path) -> list[str]:
        calls.append(path)
        return page_texts(path)

    def fail() -> list[str]:
        raise AssertionError("page texts read although the signatures are cached")

    config = config_for(pdf_source("mmlb", scenario["bench"]))
    first = build_benchmark_index(config, tmp_path, counting_texts)
    assert len(calls) == 4
    again = build_benchmark_index(config, tmp_path, counting_texts)
    assert len(calls) == 4 and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.signatures, first.signatures)

    pool = [(file_sha256(scenario["clean"]), page_texts(scenario["clean"]))]
    kept, _, _ = dedup.check_documents(first, pool, config, tmp_path)
    more = config_for(pdf_source("mmlb", scenario["bench"]), pdf_source("extra", scenario["clean"]))
    bigger = build_benchmark_index(more, tmp_path, counting_texts)
    # neither the old benchmark files nor the new one (signed already as a pool document) were read again
    assert len(calls) == 4 and bigger.fingerprint != first.fingerprint
    kept, rejects, _ = dedup.check_documents(bigger, [(pool[0][0], fail)], more, tmp_path)
    assert not kept and rejects[0].reason == "bench_sha256"
    kept, rejects, _ = dedup.check_documents(first, [(pool[0][0], fail)], config, tmp_path)
    assert kept == {pool[0][0]} and not rejects


def test_within_pool_duplicates_keep_the_smallest_sha256(pdf_dir: Path, tmp_path: Path) -> None:
    paths = [
        pdf_dir / "ulineno.pdf",
        resave(pdf_dir / "ulineno.pdf", tmp_path / "ulineno-2.pdf", "Second printing"),
        resave(pdf_dir / "ulineno.pdf", tmp_path / "ulineno-3.pdf", "Third printing"),
        pdf_dir / "brief.pdf",
    ]
    docs = pool_docs(paths)
    config = config_for()
    index = build_benchmark_index(config, tmp_path, page_texts)
    kept, rejects, report = dedup.check_documents(index, docs, config, tmp_path)
    copies = sorted(sha for sha, _ in docs[:3])
    assert kept == {copies[0], docs[3][0]}
    assert {r.item for r in rejects} == set(copies[1:])
    assert all(r.reason == "pool_near_dup" and r.extra["duplicate_of"] == copies[0] for r in rejects)
    assert report["within_pool"] == {"pool_near_dup": 2}
    assert dedup.check_documents(index, docs[::-1], config, tmp_path)[0] == kept
    off = config_for(within_pool=False)
    assert dedup.check_documents(index, docs, off, tmp_path)[0] == {sha for sha, _ in docs}


def test_image_only_documents_match_by_page_hashes(scenario: dict[str, Path], pdf_dir: Path, tmp_path: Path) -> None:
    bench = copy(pdf_dir / "ulineno.pdf", tmp_path / "bench" / "ulineno.pdf")
    copy(pdf_dir / "etoolbox.pdf", tmp_path / "bench" / "etoolbox.pdf")
    scanned = rasterise(excerpt(bench, 4, 16, tmp_path / "u.pdf"), tmp_path / "pool" / "ulineno-scan.pdf", dpi=60)
    others = [  # look-alike LaTeX manuals, not in the benchmark
        rasterise(excerpt(pdf_dir / name, 1, 12, tmp_path / name), tmp_path / "pool" / f"scan-{name}")
        for name in ("brief.pdf", "latexbug.pdf", "mathtools.pdf")
    ]
    by_sha = {file_sha256(p): p for p in (scanned, *others)}
    config = config_for(pdf_source("scans", bench.parent))
    index = build_benchmark_index(config, tmp_path, page_texts, page_images=lambda p: page_images(p, dpi=72))
    assert index.image_hashes.size >= 55

    images = lambda sha: page_images(by_sha[sha], dpi=50)  # noqa: E731
    kept, rejects, _ = dedup.check_documents(index, pool_docs([scanned, *others]), config, tmp_path, images)
    assert kept == {file_sha256(p) for p in others}
    assert rejects[0].item == file_sha256(scanned) and rejects[0].extra["method"] == "dhash"
    assert rejects[0].extra["benchmark_item"] == "ulineno.pdf"


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


BENCH_QUESTIONS = [
    {
        "question": "According to the lineno manual, which option puts the line numbers into the right margin "
        "of every page of the document?",
        "answer": "right",
    },
    {
        "question": "What is the name of the file that must be loaded before the package?",
        "answer": "The file called lineno.sty has to be loaded with the usepackage command in the preamble of "
        "the document before anything else",
    },
]


def test_question_overlap(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", BENCH_QUESTIONS)
    config = config_for(BenchmarkSource(name="docqa", kind="jsonl", path=str(path)))
    index = build_benchmark_index(config, tmp_path, page_texts)
    generated = [
        ("copied", "according to the LINENO manual: which option puts the line-numbers into the right margin of "
         "each page in the document"),
        ("common-words", "Which option of the package puts the numbers into the margin of the page in this manual?"),
        ("answer-copied", "Why has the file called lineno.sty to be loaded with the usepackage command in the "
         "preamble of the document?"),
        ("short", "What is the name of the file?"),
    ]  # fmt: skip
    rejects = dedup.question_overlaps(index, generated)
    assert [r.item for r in rejects] == ["copied", "answer-copied"]
    assert rejects[0].reason == "bench_question_overlap" and rejects[0].extra["benchmark_item"] == "row 0"
    assert rejects[0].extra["shared_ngram"].startswith("according to the lineno manual which option")
    assert rejects[1].extra["benchmark_item"] == "row 1"
    report = dedup.decontamination_report(index, rejects)
    assert report["benchmarks"]["docqa"]["dropped"]["bench_question_overlap"]["count"] == 2  # type: ignore[index]


def test_short_benchmark_question_matches_only_an_identical_question(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "How many figures are in chapter three?", "answer": "4"}])
    config = config_for(BenchmarkSource(name="short", kind="jsonl", path=str(path)))
    index = build_benchmark_index(config, tmp_path, page_texts)
    rejects = dedup.question_overlaps(
        index, [("same", "How many figures are in Chapter Three"), ("longer", "How many figures are in chapter 3?")]
    )
    assert [r.item for r in rejects] == ["same"]


def test_hub_dataset_from_a_local_folder(scenario: dict[str, Path], pdf_dir: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    faq_pages = page_texts(scenario["excerpted"])[30:42]
    scans = page_images(pdf_dir / "ulineno.pdf", dpi=72)
    rows = {
        "doc_id": ["faq"] * len(faq_pages) + ["lineno"] * len(scans),
        "page_text": faq_pages + [""] * len(scans),
        "page": [None] * len(faq_pages) + [{"bytes": b, "path": None} for b in scans],
        "question": [BENCH_QUESTIONS[0]["question"]] + [None] * (len(faq_pages) + len(scans) - 1),
        "answer": ["right"] + [None] * (len(faq_pages) + len(scans) - 1),
    }
    features = datasets.Features(
        {k: datasets.Value("string") for k in ("doc_id", "page_text", "question", "answer")}
        | {"page": datasets.Image()}
    )
    folder = tmp_path / "hubbench"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    source = BenchmarkSource(
        name="hubbench", kind="hub", path=str(folder), doc_id_column="doc_id", text_column="page_text",
        image_column="page", question_column="question", answer_column="answer",
    )  # fmt: skip
    config = config_for(source)
    index = build_benchmark_index(config, tmp_path / "cache", page_texts)

    scanned = rasterise(pdf_dir / "ulineno.pdf", tmp_path / "scan.pdf", dpi=60)
    docs = pool_docs([scenario["excerpted"], scenario["clean"], scanned])
    kept, rejects, report = dedup.check_documents(
        index, docs, config, tmp_path / "cache", lambda sha: page_images(scanned, dpi=50)
    )
    assert kept == {docs[1][0]}
    assert [(r.reason, r.extra["benchmark_item"], r.extra["method"]) for r in rejects] == [
        ("bench_near_dup", "faq", "minhash"),
        ("bench_near_dup", "lineno", "dhash"),
    ]
    assert report["benchmarks"]["hubbench"]["questions"] == 1  # type: ignore[index]
    overlaps = dedup.question_overlaps(index, [("q1", BENCH_QUESTIONS[0]["question"])])
    assert overlaps[0].extra["benchmark_item"] == "faq#0"


def test_hub_dataset_saved_to_disk_with_a_list_of_page_images(pdf_dir: Path, tmp_path: Path) -> None:
    """A `save_to_disk` folder whose rows carry a whole deck of page images (like SlideVQA), one row per question."""
    datasets = pytest.importorskip("datasets")
    deck = [
        {"bytes": b, "path": None} for b in page_images(excerpt(pdf_dir / "ulineno.pdf", 1, 12, tmp_path / "d.pdf"))
    ]
    features = datasets.Features(
        {"id": datasets.Value("string"), "q": datasets.Value("string"), "a": datasets.Value("string")}
        | {"deck": datasets.List(datasets.Image())}
    )
    rows = {"id": ["deck-1", "deck-1"], "q": [BENCH_QUESTIONS[0]["question"], "Another question?"], "a": ["right", ""]}
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict(rows | {"deck": [deck, deck]}, features=features).save_to_disk(str(folder))
    source = BenchmarkSource(
        name="saved", kind="hub", path=str(folder), doc_id_column="id", image_column="deck", question_column="q",
        answer_column="a",
    )  # fmt: skip
    config = config_for(source)
    index = build_benchmark_index(config, tmp_path / "cache", page_texts)
    assert index.image_docs == [("saved", "deck-1", 12)]  # the repeated deck is indexed once
    overlaps = dedup.question_overlaps(index, [("q", BENCH_QUESTIONS[0]["question"].upper())])
    assert [r.extra["benchmark_item"] for r in overlaps] == ["deck-1#0"]

    scan = rasterise(excerpt(pdf_dir / "ulineno.pdf", 3, 14, tmp_path / "e.pdf"), tmp_path / "scan.pdf")
    docs = pool_docs([scan])
    kept, rejects, _ = dedup.check_documents(
        index, docs, config, tmp_path / "cache", lambda sha: page_images(scan, 50)
    )
    assert not kept and rejects[0].extra["method"] == "dhash" and rejects[0].extra["similarity"] >= 0.7


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (dict(kind="pdfs", path="{tmp}/nowhere"), r"nowhere does not exist"),
        (dict(kind="pdfs", path="{tmp}/*.pdf"), r"holds no PDF"),
        (dict(kind="pdfs"), r"needs `path`"),
        (dict(kind="jsonl", path="{tmp}/missing.jsonl"), r"missing.jsonl does not exist"),
        (dict(kind="jsonl", path="{tmp}/qa.jsonl", question_column="prompt"), r"\['prompt'\] not found"),
        (dict(kind="jsonl", path="{tmp}/bad.jsonl"), r"bad.jsonl:2: not valid JSON"),
        (dict(kind="hub", path="{tmp}/no-folder"), r"no-folder does not exist"),
        (dict(kind="hub", path="{tmp}/hub", text_column="text"), r"\['text'\] not found"),
        (dict(kind="hub", path="{tmp}/hub", split="validation"), r"cannot load .*split 'validation'"),
        (dict(kind="hub", path="{tmp}/hub"), r"names no column to index"),
        (dict(kind="hub"), r"set exactly one of `path`"),
    ],
)
def test_clear_errors_for_bad_sources(tmp_path: Path, source: dict[str, str], message: str) -> None:
    write_jsonl(tmp_path / "qa.jsonl", BENCH_QUESTIONS)
    (tmp_path / "bad.jsonl").write_text('{"question": "ok"}\n{not json\n', encoding="utf-8")
    if source.get("kind") == "hub" and source.get("path", "").endswith("/hub"):
        pytest.importorskip("datasets")
        (tmp_path / "hub").mkdir()
        write_jsonl(tmp_path / "hub" / "test.jsonl", BENCH_QUESTIONS)
    fields = {k: v.format(tmp=tmp_path) for k, v in source.items()}
    config = config_for(BenchmarkSource(name="bad", **fields))  # type: ignore[arg-type]
    with pytest.raises(RecipeError, match=message) as info:
        build_benchmark_index(config, tmp_path / "cache", page_texts)
    assert "\n" not in str(info.value) and "'bad'" in str(info.value)


def test_unreadable_benchmark_pdf_is_reported_and_still_matched_by_sha256(tmp_path: Path) -> None:
    broken = tmp_path / "bench" / "broken.pdf"
    broken.parent.mkdir()
    broken.write_bytes(b"%PDF-1.7\nthis is not a PDF body")
    config = config_for(pdf_source("mmlb", broken.parent))
    index = build_benchmark_index(config, tmp_path, page_texts)
    sha = file_sha256(broken)
    kept, rejects, report = dedup.check_documents(index, [(sha, [])], config, tmp_path)
    assert not kept and rejects[0].reason == "bench_sha256"
    assert report["benchmarks"]["mmlb"]["unreadable"][0].startswith("broken.pdf: ")  # type: ignore[index]


def test_duplicate_source_names_are_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", BENCH_QUESTIONS)
    twice = [BenchmarkSource(name="x", kind="jsonl", path=str(path))] * 2
    with pytest.raises(RecipeError, match="duplicated name"):
        build_benchmark_index(config_for(*twice), tmp_path, page_texts)


def test_vectorised_words_equal_the_reference_tokeniser(pdf_dir: Path) -> None:
    pages = page_texts(pdf_dir / "ulineno.pdf") + ["ﬁle_name — “Quoted” ÉTÉ straße x²", ""]
    hashes, owners = minhash.word_hashes(pages)
    reference = [w for page in pages for w in minhash.normalised_words(page)]
    assert len(hashes) == len(reference) > 3000
    singles = np.array([minhash.word_hashes([w])[0][0] for w in reference], dtype=np.uint64)
    np.testing.assert_array_equal(hashes, singles)  # a word hashes alike wherever it occurs
    assert owners[-1] == len(pages) - 2
    assert minhash.normalised_words(pages[-2]) == ["file", "name", "quoted", "été", "strasse", "x2"]


def test_word_table_is_the_regex_word_class() -> None:
    table = minhash._word_table()
    sample = list(range(0, 0x3400)) + list(range(0xF900, 0x10000)) + list(range(0x1D400, 0x1D800))
    pattern = re.compile(r"[^\W_]")
    assert all(bool(table[c]) == bool(pattern.fullmatch(chr(c))) for c in sample)


def test_lsh_bands_rows_derivation() -> None:
    assert minhash.lsh_params(0.7, 128) == (21, 6)
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = minhash.lsh_params(threshold, 128)
        assert bands * rows <= 128 and 1 - (1 - threshold**rows) ** bands >= 0.9


def test_estimates_agree_across_backends(pdf_dir: Path) -> None:
    a, b = page_texts(pdf_dir / "R-FAQ.pdf"), page_texts(pdf_dir / "R-data.pdf")
    variant = a[:40] + b[:10]  # 40 of 52 pages shared: true Jaccard of the shingle sets about 0.7
    for backend in BACKENDS:
        settings = minhash.SignatureSettings(backend=backend)
        one, two = minhash.page_signatures(a, settings), minhash.page_signatures(variant, settings)
        assert one.values.shape == (52, 128) and one.values.dtype == np.uint32
        assert 0.55 < minhash.estimate_jaccard(one.document(), two.document())[0] < 0.85


def test_our_lsh_finds_the_candidates_of_datasketch_minhashlsh() -> None:
    """SignatureLSH (banded, numpy + dict: no scipy in the base install) against datasketch's MinHashLSH."""
    datasketch = pytest.importorskip("datasketch")

    class Sketch:  # what MinHashLSH reads from a MinHash: its values and its length
        def __init__(self, values: np.ndarray) -> None:
            self.hashvalues = values

        def __len__(self) -> int:
            return len(self.hashvalues)

    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**32, size=(40, 128), dtype=np.uint64)
    near = base.copy()
    near[:, :48] = rng.integers(0, 2**32, size=(40, 48), dtype=np.uint64)  # 8 of 21 bands of 6 rows changed
    ours = minhash.SignatureLSH(0.7, 128)
    theirs = datasketch.MinHashLSH(num_perm=128, params=ours.params)
    for key, signature in enumerate(base):
        ours.insert(key, signature)
        theirs.insert(key, Sketch(signature), check_duplication=False)
    for query in [*near, *rng.integers(0, 2**32, size=(10, 128), dtype=np.uint64), *base[:5]]:
        assert ours.query(query) == sorted(theirs.query(Sketch(query)))
    assert ours.query(near[7]) and 7 in ours.query(near[7])
