"""Benchmark sources for decontamination: loading them and building (or reusing) the cached benchmark index.

Owns: resolving each `decontaminate.benchmarks` entry (a folder or glob of PDFs, a Hub dataset or a local dataset
folder read with `datasets`, a JSONL of questions and answers), one-line errors for a source that does not exist or
lacks a named column, each source's fingerprint (file SHA-256s, or the dataset's fingerprint), and the index cache
keyed by those fingerprints and the settings. PDFs are read only through the caller's functions (`render.page_texts`
and a page renderer), so this module imports no PDF library. Hashing lives in decontamination/ (minhash.py,
pagehash.py), the index in benchindex.py, matching in dedup.py.
"""

from __future__ import annotations

import glob
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.fingerprint import content_hash, file_sha256
from longdocvqa.core.recipe import BenchmarkSource, DecontaminateConfig
from longdocvqa.decontamination.benchindex import (
    BenchmarkDocument,
    BenchmarkIndex,
    BenchmarkQuestion,
    SourceSummary,
    build_index,
    load_index,
    save_index,
    settings_fingerprint,
)
from longdocvqa.decontamination.pagehash import dhash

PageTexts = Callable[[Path], list[str]]
PageImages = Callable[[Path], list[bytes]]

_GLOB_CHARS = re.compile(r"[*?\[]")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def build_benchmark_index(
    config: DecontaminateConfig,
    cache_dir: str | Path,
    page_texts: PageTexts,
    page_images: PageImages | None = None,
) -> BenchmarkIndex:
    """The benchmark index of `config.benchmarks`, reused from `cache_dir` when its fingerprint (the sources' file
    SHA-256s or dataset fingerprints, and the settings) is unchanged. `page_images(path)`, when given, renders a
    benchmark PDF's pages so that image-only pool documents can be matched by page-image hashes."""
    cache_dir = Path(cache_dir)
    sources = resolve_sources(config, cache_dir)
    fingerprint = index_fingerprint(config, sources, with_images=page_images is not None)
    folder = cache_dir / "benchmark-index" / fingerprint
    if (index := load_index(folder, fingerprint)) is not None:
        return index
    items = [source.items(page_texts, page_images) for source in sources]
    documents = itertools.chain.from_iterable(docs for docs, _ in items)
    questions = itertools.chain.from_iterable(qs for _, qs in items)
    summaries = [SourceSummary(name=s.source.name, kind=s.source.kind) for s in sources]
    index = build_index(documents, questions, summaries, config, cache_dir, fingerprint)
    save_index(index, folder)
    return index


def index_fingerprint(config: DecontaminateConfig, sources: list[PdfSource | RowSource], with_images: bool) -> str:
    """The index's cache key: the settings, whether page images are hashed, and every source's fingerprint."""
    parts = {"settings": settings_fingerprint(config), "page_images": with_images}
    return content_hash(parts | {"sources": [source.fingerprint() for source in sources]}, length=16)


def resolve_sources(config: DecontaminateConfig, cache_dir: Path) -> list[PdfSource | RowSource]:
    """Check every benchmark source (exists, has its columns) and prepare it for loading."""
    names = [b.name for b in config.benchmarks]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RecipeError(f"decontaminate.benchmarks: duplicated name(s) {duplicated}")
    resolvers: dict[str, Callable[[BenchmarkSource, Path], PdfSource | RowSource]] = {
        "pdfs": resolve_pdfs,
        "hub": resolve_dataset,
        "jsonl": resolve_jsonl,
    }
    return [resolvers[b.kind](b, cache_dir) for b in config.benchmarks]


def _fail(source: BenchmarkSource, message: str) -> RecipeError:
    return RecipeError(f"benchmark {source.name!r} ({source.kind}): {message}")


# ---------------------------------------------------------------------------------------------------------------
# PDF folders and globs
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class PdfSource:
    """A folder (searched recursively) or glob of benchmark PDFs; each file is one document, its item id the path
    relative to the folder (or to the glob's fixed prefix)."""

    source: BenchmarkSource
    files: list[tuple[str, Path, str]]  # (item, path, sha256)

    def fingerprint(self) -> dict[str, object]:
        return {"source": self.source.model_dump(mode="json"), "files": [(i, sha) for i, _, sha in self.files]}

    def items(
        self, page_texts: PageTexts, page_images: PageImages | None
    ) -> tuple[Iterator[BenchmarkDocument], list[BenchmarkQuestion]]:
        def document(item: str, path: Path, sha256: str) -> BenchmarkDocument:
            images = (lambda: page_images(path)) if page_images is not None else None
            return BenchmarkDocument(self.source.name, item, sha256, lambda: page_texts(path), images)

        return (document(*entry) for entry in self.files), []


def resolve_pdfs(source: BenchmarkSource, cache_dir: Path) -> PdfSource:
    """List (and hash) the PDFs of a folder, a glob or a single file."""
    if not source.path:
        raise _fail(source, "needs `path`: a folder, glob or file of PDFs")
    base, paths = _pdf_paths(source.path)
    if not paths:
        what = "does not exist" if not _GLOB_CHARS.search(source.path) and not base.exists() else "holds no PDF"
        raise _fail(source, f"{source.path} {what}")
    files = [(p.relative_to(base).as_posix() if p != base else p.name, p, file_sha256(p)) for p in paths]
    return PdfSource(source=source, files=files)


def _pdf_paths(pattern: str) -> tuple[Path, list[Path]]:
    if _GLOB_CHARS.search(pattern):
        fixed = _GLOB_CHARS.split(pattern, maxsplit=1)[0]
        base = Path(fixed) if fixed.endswith("/") else Path(fixed).parent
        matches = (Path(p) for p in glob.glob(pattern, recursive=True))
        return base, sorted(p for p in matches if p.is_file() and p.suffix.lower() == ".pdf")
    path = Path(pattern)
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        return path, sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")
    return path, []


# ---------------------------------------------------------------------------------------------------------------
# Row sources: Hub datasets, local dataset folders, JSONL
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class RowSource:
    """Rows (dicts) of a dataset or JSONL. Rows sharing `doc_id_column` form one document whose pages are the
    distinct values of `text_column` (a string or a list of strings per row) and whose page images are the values
    of `image_column` (an image, an encoded {'bytes', 'path'} dict, a file name, or a list of those); every row with
    a question is one benchmark question (item id: doc id and row number)."""

    source: BenchmarkSource
    rows: Callable[[], Iterable[dict[str, Any]]]
    identity: object
    base_dir: Path | None = None
    columns: dict[str, str | None] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, object]:
        return {"source": self.source.model_dump(mode="json"), "identity": self.identity, "columns": self.columns}

    def items(
        self, page_texts: PageTexts, page_images: PageImages | None
    ) -> tuple[list[BenchmarkDocument], list[BenchmarkQuestion]]:
        pages: dict[str, dict[str, None]] = {}
        images: dict[str, dict[tuple[int, ...], None]] = {}
        questions: list[BenchmarkQuestion] = []
        doc_column = self.columns.get("doc_id")
        for number, row in enumerate(self.rows()):
            doc_id = str(row.get(doc_column)) if doc_column else f"row {number}"
            self._add_pages(row, doc_id, pages)
            self._add_images(row, doc_id, images)
            if (question := self._question(row, doc_id, number)) is not None:
                questions.append(question)
        documents = [
            BenchmarkDocument(
                self.source.name, doc_id, None, list(pages.get(doc_id, {})), image_hashes=_flat(images.get(doc_id, {}))
            )
            for doc_id in dict.fromkeys([*pages, *images])
        ]
        return documents, questions

    def _add_pages(self, row: dict[str, Any], doc_id: str, pages: dict[str, dict[str, None]]) -> None:
        column = self.columns.get("text")
        if column:
            for text in _as_list(row.get(column)):
                if isinstance(text, str) and text.strip():
                    pages.setdefault(doc_id, {})[text] = None

    def _add_images(self, row: dict[str, Any], doc_id: str, images: dict[str, dict[tuple[int, ...], None]]) -> None:
        """The row's page hashes, in order; a row repeating pages already seen (one row per question) adds nothing."""
        column = self.columns.get("image")
        if column:
            hashes = tuple(dhash(self._image(value)) for value in _as_list(row.get(column)))
            if hashes:
                images.setdefault(doc_id, {})[hashes] = None

    def _image(self, value: Any) -> Any:
        """An image value as something `dedup.dhash` reads: encoded bytes or a PIL image."""
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, bytes | bytearray) or hasattr(value, "convert"):
            return value
        if isinstance(value, str):
            path = Path(value) if Path(value).is_absolute() or self.base_dir is None else self.base_dir / value
            if path.is_file():
                return path.read_bytes()
        raise _fail(
            self.source, f"column {self.columns['image']!r}: {str(value)[:80]!r} is neither an image nor a file"
        )

    def _question(self, row: dict[str, Any], doc_id: str, number: int) -> BenchmarkQuestion | None:
        column = self.columns.get("question")
        question = row.get(column) if column else None
        if not isinstance(question, str) or not question.strip():
            return None
        answer_column = self.columns.get("answer")
        answer = _answer_text(row.get(answer_column)) if answer_column else ""
        item = f"{doc_id}#{number}" if self.columns.get("doc_id") else f"row {number}"
        return BenchmarkQuestion(self.source.name, item, question, answer)


def _flat(runs: Iterable[tuple[int, ...]]) -> list[int]:
    return [value for run in runs for value in run]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _answer_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return " ".join(_answer_text(v) for v in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _named_columns(source: BenchmarkSource) -> dict[str, str | None]:
    return {
        "text": source.text_column,
        "image": source.image_column,
        "doc_id": source.doc_id_column,
        "question": source.question_column,
        "answer": source.answer_column,
    }


def _check_columns(source: BenchmarkSource, columns: dict[str, str | None], available: Iterable[str]) -> None:
    available = list(available)
    missing = [name for name in columns.values() if name and name not in available]
    if missing:
        raise _fail(source, f"column(s) {missing} not found; the source has {available}")
    if not any(columns.get(role) for role in ("text", "image", "question")):
        raise _fail(source, "names no column to index: set text_column, image_column or question_column")


def resolve_jsonl(source: BenchmarkSource, cache_dir: Path) -> RowSource:
    """A JSONL file of questions and answers (default columns `question` and `answer`, when present)."""
    if not source.path:
        raise _fail(source, "needs `path`: a JSONL file")
    path = Path(source.path)
    if not path.is_file():
        raise _fail(source, f"{path} does not exist")
    rows = lambda: _read_jsonl(source, path)  # noqa: E731
    first = next(iter(rows()), None)
    if first is None:
        raise _fail(source, f"{path} holds no rows")
    columns = _named_columns(source)
    for role in ("question", "answer"):
        if columns[role] is None and role in first:
            columns[role] = role
    _check_columns(source, columns, first)
    return RowSource(source, rows, identity=file_sha256(path), base_dir=path.parent, columns=columns)


def _read_jsonl(source: BenchmarkSource, path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(source, f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise _fail(source, f"{path}:{number}: a row must be a JSON object, got {type(row).__name__}")
            yield row


def resolve_dataset(source: BenchmarkSource, cache_dir: Path) -> RowSource:
    """A Hub dataset (`repo`, `config`, `split`, `revision`) or a local dataset folder (`path`), read with `datasets`:
    a folder of data files through `load_dataset`, a `save_to_disk` folder through `load_from_disk`."""
    if bool(source.path) == bool(source.repo):
        raise _fail(source, "set exactly one of `path` (a local dataset folder) and `repo` (a Hub dataset id)")
    columns = _named_columns(source)
    if source.path:
        folder = Path(source.path)
        if not folder.is_dir():
            raise _fail(source, f"{folder} does not exist (or is not a folder)")
        identity: object = _folder_fingerprint(folder)
        dataset = _load_dataset(source, cache_dir)
        return RowSource(source, _rows(dataset, columns), identity, base_dir=folder, columns=columns)
    dataset = _load_dataset(source, cache_dir)
    identity = source.revision if source.revision and _COMMIT.match(source.revision) else dataset._fingerprint
    return RowSource(source, _rows(dataset, columns), identity, columns=columns)


def _folder_fingerprint(folder: Path) -> list[tuple[str, str]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [(p.relative_to(folder).as_posix(), file_sha256(p)) for p in files]


def _load_dataset(source: BenchmarkSource, cache_dir: Path) -> Any:
    """The split as a `datasets.Dataset`, its columns checked, images left encoded; loading errors become one line."""
    import datasets

    reference = source.path or source.repo
    try:
        if source.path and any((Path(source.path) / name).is_file() for name in ("state.json", "dataset_dict.json")):
            dataset = datasets.load_from_disk(source.path)
            dataset = dataset[source.split] if isinstance(dataset, datasets.DatasetDict) else dataset
        else:
            kwargs: dict[str, Any] = {"split": source.split, "revision": source.revision}
            if source.path:
                kwargs["cache_dir"] = str(cache_dir / "datasets")
            dataset = datasets.load_dataset(reference, source.config, **kwargs)
    except Exception as exc:  # datasets raises many types (not found, bad split, offline): one line for the user
        message = (str(exc).strip().splitlines() or [""])[0][:300]
        raise _fail(
            source, f"cannot load {reference} (split {source.split!r}): {type(exc).__name__}: {message}"
        ) from None
    _check_columns(source, _named_columns(source), dataset.column_names)
    return _encoded_images(dataset, source.image_column)


def _encoded_images(dataset: Any, column: str | None) -> Any:
    """Cast an Image column (or a list of images) to `decode=False`: rows then carry encoded bytes, not PIL images."""
    import datasets

    feature = dataset.features.get(column) if column else None
    if isinstance(feature, datasets.Image):
        return dataset.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.Image):
        return dataset.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return dataset


def _rows(dataset: Any, columns: dict[str, str | None]) -> Callable[[], Iterable[dict[str, Any]]]:
    names = [name for name in dict.fromkeys(columns.values()) if name]
    return lambda: iter(dataset.select_columns(names))
