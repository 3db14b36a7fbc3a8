"""The questions and documents an evaluation runs on: a built dataset, or a benchmark folder in MMLongBench-Doc's
layout.

Owns: reading both kinds of input into `EvalSet` (questions, documents with their page sizes and a way to fetch each
page as the image the build rendered or as text), and recording every unusable item (a missing or broken PDF, an
unknown answer format) as a rejected item with its reason, never stopping.
- A built dataset (a run directory, its `dataset/` folder, or a Hub repo id): the `qa` config gives the questions,
  the `sft` config the documents' pages exactly as the build rendered them (one row per document is read), both for
  the chosen split. Text input needs the PDFs themselves (`pdf_dir`, found by the `documents` config's file names).
- A benchmark folder: PDFs (in the folder, `documents/` or anywhere below it; those without questions only pad
  prompts) plus JSON or JSONL files of objects
  with `doc_id` (the PDF's file name), `question`, `answer`, `answer_format` (Int/Integer, Float, Str/String, List,
  None) and `evidence_pages`; `doc_type` (if given) is used as the task. Pages are rendered at `dpi` on demand.
Does not own: prompts or lengths (prompt.py), model calls (run.py).
"""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from longdocvqa.assembly.tokens import decoded_size_px, pixmap_size_px
from longdocvqa.core.contract import qa_record_from_row
from longdocvqa.core.errors import RecipeError, RejectedInput
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.records import Reject
from longdocvqa.documents import render
from longdocvqa.eval.score import canonical_format, is_not_answerable
from longdocvqa.hub.load import is_local, load_config
from longdocvqa.hub.push import dataset_folder

STAGE = "eval"
BENCHMARK_TASK = "benchmark"
_PAGE_CACHE = 256  # rendered pages kept in memory (about 0.3 MB each at 144 DPI)
_PDF_LOCK = threading.Lock()  # prompts are built in worker threads, and MuPDF is not thread-safe


@dataclass(frozen=True)
class EvalQuestion:
    """One question with its gold answer, over one document."""

    id: str
    doc_id: str
    question: str
    answer: str | list[str]
    answer_format: str
    evidence_pages: list[int]
    task: str


@dataclass
class EvalDocument:
    """One document: its name in prompts, the pixel size of each page image, and its pages on demand."""

    id: str
    name: str
    page_sizes_px: list[tuple[int, int]]
    image: Callable[[int], bytes] = field(repr=False)
    text: Callable[[int], str] | None = field(default=None, repr=False)

    @property
    def num_pages(self) -> int:
        return len(self.page_sizes_px)


@dataclass
class EvalSet:
    """What an evaluation runs on: questions, their documents (and the split's other documents), rejects."""

    source: str
    split: str
    questions: list[EvalQuestion]
    documents: dict[str, EvalDocument]
    rejects: list[Reject] = field(default_factory=list)


def load_eval_set(
    source: str | Path, split: str = "test", *, revision: str | None = None, dpi: int = 144,
    pdf_dir: str | Path | None = None,
) -> EvalSet:  # fmt: skip
    """An EvalSet from a benchmark folder (PDFs + JSON/JSONL) or a built dataset (folder or Hub repo)."""
    if is_local(source) and _question_files(Path(source)):
        return load_benchmark(Path(source), dpi=dpi)
    text = str(source)
    if not Path(source).exists() and (Path(text).is_absolute() or text.startswith(".") or text.count("/") > 1):
        raise RecipeError(f"{source}: no such folder (and not a Hub repo id ORG/NAME)")
    target = str(dataset_folder(source)) if Path(source).exists() else str(source)
    return load_dataset_split(target, split, revision=revision, pdf_dir=pdf_dir)


# ---------------------------------------------------------------------------------------------- benchmark folder


def _question_files(folder: Path) -> list[Path]:
    """JSON/JSONL files directly in the folder (or in data/) whose first record has doc_id and question."""
    candidates = [path for sub in (folder, folder / "data") for path in sorted(sub.glob("*.json*"))]
    files = [path for path in candidates if path.suffix in (".json", ".jsonl")]
    return [path for path in files if _looks_like_questions(path)]


def _looks_like_questions(path: Path) -> bool:
    try:
        records = _read_records(path)
    except (OSError, ValueError):
        return False
    return bool(records) and isinstance(records[0], dict) and {"doc_id", "question"} <= records[0].keys()


def _read_records(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


def load_benchmark(folder: Path, dpi: int = 144) -> EvalSet:
    """Every question of the folder's JSON/JSONL files whose PDF is readable; the rest as rejects."""
    questions: list[EvalQuestion] = []
    documents: dict[str, EvalDocument] = {}
    rejects: list[Reject] = []
    pdfs = _pdf_index(folder)
    loaded: dict[Path, str] = {}  # PDF path -> doc_id
    for path in _question_files(folder):
        for line, record in enumerate(_read_records(path), start=1):
            try:
                question = benchmark_question(record)
                if question.doc_id not in documents:
                    pdf = _find_pdf(pdfs, question.doc_id)
                    documents[question.doc_id] = pdf_document(question.doc_id, pdf, dpi)
                    loaded[pdf] = question.doc_id
                check_evidence_pages(question, documents[question.doc_id])
            except RejectedInput as exc:
                rejects.append(Reject(stage=STAGE, item=f"{path.name}:{line}", reason=exc.reason, detail=exc.detail))
                continue
            questions.append(question)
    for pdf in sorted(set(pdfs.values()) - loaded.keys()):  # PDFs without questions still pad prompts
        if pdf.name in documents:
            continue
        try:
            documents[pdf.name] = pdf_document(pdf.name, pdf, dpi)
        except RejectedInput as exc:
            rejects.append(Reject(stage=STAGE, item=pdf.name, reason=exc.reason, detail=exc.detail))
    return EvalSet(str(folder), "all", questions, documents, rejects)


def _pdf_index(folder: Path) -> dict[str, Path]:
    """File name and path relative to the folder -> path, for every PDF below the folder."""
    index: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.pdf")):
        index.setdefault(path.name, path)
        index[path.relative_to(folder).as_posix()] = path
    return index


def _find_pdf(pdfs: dict[str, Path], doc_id: str) -> Path:
    path = pdfs.get(doc_id) or pdfs.get(Path(doc_id).name)
    if path is None:
        raise RejectedInput("missing_pdf", f"{doc_id}: no such PDF in the benchmark folder")
    return path


def benchmark_question(record: Any) -> EvalQuestion:
    """An EvalQuestion from one MMLongBench-Doc record (evidence_pages as a list or its text, "[5]")."""
    if not isinstance(record, dict) or not {"doc_id", "question", "answer", "answer_format"} <= record.keys():
        raise RejectedInput("bad_record", "needs doc_id, question, answer and answer_format")
    try:
        fmt = canonical_format(record["answer_format"])
    except ValueError as exc:
        raise RejectedInput("bad_answer_format", str(exc)) from None
    pages = _int_list(record.get("evidence_pages", []))
    answer = record["answer"]
    answer = answer if isinstance(answer, list) else str(answer)
    doc_id, text = str(record["doc_id"]), str(record["question"])
    task = str(record.get("doc_type") or BENCHMARK_TASK)
    qid = content_hash({"doc_id": doc_id, "question": text}, 16)
    return EvalQuestion(qid, doc_id, text, answer, fmt, pages, task)


def check_evidence_pages(question: EvalQuestion, document: EvalDocument) -> None:
    """RejectedInput unless every evidence page is a page of the question's document (1-based)."""
    outside = [page for page in question.evidence_pages if not 1 <= page <= document.num_pages]
    if outside:
        raise RejectedInput(
            "bad_evidence_pages", f"evidence pages {outside} are not pages of {document.id} (1-{document.num_pages})"
        )


def _int_list(value: Any) -> list[int]:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip() or "[]")
        except (ValueError, SyntaxError):
            raise RejectedInput("bad_evidence_pages", f"evidence_pages {value!r} is not a list") from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, int) for v in value):
        raise RejectedInput("bad_evidence_pages", f"evidence_pages {value!r} is not a list of page numbers")
    return [int(v) for v in value]


def pdf_document(doc_id: str, path: Path, dpi: int) -> EvalDocument:
    """A PDF as an EvalDocument: pages rendered as JPEG at `dpi` on demand, text extracted on demand."""
    info = render.probe(path)  # RejectedInput for a broken PDF
    sizes = [pixmap_size_px(w, h, dpi) for w, h in info["page_sizes_pt"]]

    @lru_cache(maxsize=_PAGE_CACHE)
    def image(page: int) -> bytes:
        with _PDF_LOCK:
            return render.render_page(path, page, dpi=dpi, fmt="jpeg", quality=90)

    texts = _lazy_texts(path)
    return EvalDocument(doc_id, Path(doc_id).stem, sizes, image, texts)


def _lazy_texts(path: Path) -> Callable[[int], str]:
    cache: list[list[str]] = []

    def text(page: int) -> str:
        with _PDF_LOCK:
            if not cache:
                cache.append(render.page_texts(path))
        return cache[0][page - 1]

    return text


# ---------------------------------------------------------------------------------------------- built dataset


def load_dataset_split(
    source: str, split: str, *, revision: str | None = None, pdf_dir: str | Path | None = None
) -> EvalSet:
    """Questions of the `qa` config's `split` and their documents' pages from the `sft` config's same split."""
    qa_rows = _load_split(source, "qa", split, revision)
    sft = _load_split(source, "sft", split, revision).select_columns(["doc_id", "images"])
    rows_by_doc: dict[str, int] = {}
    for index, doc_id in enumerate(sft["doc_id"]):
        if doc_id:
            rows_by_doc.setdefault(doc_id, index)
    names = _document_names(source, split, revision)

    @lru_cache(maxsize=8)  # one row holds every page of a document: keep a few documents' pages at hand
    def row_images(row: int) -> list[dict[str, Any]]:
        return list(sft[row]["images"])

    documents, rejects = {}, []
    for doc_id, row in rows_by_doc.items():
        try:
            documents[doc_id] = _sft_document(row_images, row, doc_id, names.get(doc_id, ""), pdf_dir)
        except RejectedInput as exc:  # a page image that does not decode: the document and its questions are left out
            rejects.append(Reject(stage=STAGE, item=doc_id, reason=exc.reason, detail=exc.detail))
    questions = []
    for row in qa_rows:
        try:
            questions.append(dataset_question(row, documents))
        except RejectedInput as exc:
            rejects.append(Reject(stage=STAGE, item=row.get("id", "?"), reason=exc.reason, detail=exc.detail))
    return EvalSet(source, split, questions, documents, rejects)


def _load_split(source: str, config: str, split: str, revision: str | None) -> Any:
    try:
        splits = load_config(source, config, revision=revision, decode_images=False)
    except Exception as exc:  # datasets raises many types for a missing or malformed source
        raise RecipeError(f"{source}: cannot load the {config!r} config: {exc}") from None
    if split not in splits:
        raise RecipeError(f"{source}: no split {split!r} in the {config!r} config (it has: {', '.join(splits)})")
    return splits[split]


def _document_names(source: str, split: str, revision: str | None) -> dict[str, str]:
    try:
        rows = _load_split(source, "documents", split, revision)
    except RecipeError:
        return {}
    return {row["sha256"]: row["file_name"] or "" for row in rows}


def _sft_document(
    row_images: Callable[[int], list[dict[str, Any]]], row: int, doc_id: str, file_name: str,
    pdf_dir: str | Path | None,
) -> EvalDocument:  # fmt: skip
    try:  # every page decoded once, in full: a page cut short would otherwise fail mid-run, in a worker thread
        sizes = [decoded_size_px(image) for image in row_images(row)]
    except (ValueError, KeyError, TypeError) as exc:
        raise RejectedInput("bad_image", f"a page image of document {doc_id[:12]} does not decode: {exc}") from None

    def image(page: int) -> bytes:
        data = row_images(row)[page - 1]
        return data["bytes"] if data.get("bytes") else Path(data["path"]).read_bytes()

    text = None
    if pdf_dir is not None and file_name and (Path(pdf_dir) / file_name).is_file():
        text = _lazy_texts(Path(pdf_dir) / file_name)
    return EvalDocument(doc_id, Path(file_name).stem if file_name else doc_id[:12], sizes, image, text)


def dataset_question(row: dict[str, Any], documents: dict[str, EvalDocument]) -> EvalQuestion:
    """An EvalQuestion from a `qa` row whose document is among the split's `sft` documents."""
    record = qa_record_from_row(row)
    if record["doc_sha256"] not in documents:
        raise RejectedInput("missing_document", f"document {record['doc_sha256'][:12]} has no sft row in the split")
    try:
        fmt = canonical_format(record["answer_format"])
    except ValueError as exc:
        raise RejectedInput("bad_answer_format", str(exc)) from None
    answer = record["answer"]
    if not isinstance(answer, list) and is_not_answerable(answer):
        fmt = "None"
    question = EvalQuestion(record["id"], record["doc_sha256"], record["question"], answer, fmt,
                            list(record["evidence_pages"]), record["task"])  # fmt: skip
    check_evidence_pages(question, documents[question.doc_id])
    return question
