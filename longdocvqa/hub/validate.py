"""Checks a built dataset, a local folder or a Hub repo, loaded the way a user would load it.

Every row of the three configs is streamed through `datasets.load_dataset` (via hub.load) and checked:
QA rows against the JSON Schema of the Pydantic models, unique ids, every row's document present in `documents`,
image count of `sft` rows equal to the document's pages, every image fully decoded (a JPEG cut short is caught),
evidence pages inside the document and inside the recorded segment, token lengths inside the recipe window and
consistent with the images and text, task shares and counts as the card records them, no document in two splits,
and the card's YAML itself.

Owns the checks and the report (`ValidationReport`); printing it (cli/dataset.py) and the exit code are the CLI's.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from longdocvqa.assembly import tokens
from longdocvqa.core.contract import (
    CARD_KEY,
    CONFIGS,
    DEFAULT_CONFIG,
    REQUIRED_HEADER_KEYS,
    CardMeta,
    QARow,
    ordered_splits,
    qa_record_from_row,
)
from longdocvqa.core.errors import StageError
from longdocvqa.core.records import OCR_TASKS, QA
from longdocvqa.hub.card import split_card
from longdocvqa.hub.load import check_reachable, is_local, iter_rows, read_card_text

# Failure kinds, in report order.
KINDS: tuple[str, ...] = (
    "load", "card", "card_counts", "schema", "duplicate_id", "missing_document", "split_leak", "image_count",
    "image", "placeholders", "messages", "qa_link", "segment", "evidence_page", "token_window", "token_count",
    "task_share",
)  # fmt: skip
_SHARE_TOLERANCE = 1e-4
_TOKENS_PER_TURN_MIN = 4  # <|im_start|> role \n ... <|im_end|>
_TEMPLATE_OVERHEAD_MAX = 64  # default system prompt and generation markers of the Qwen2.5-VL chat template
_TOKENS_PER_TURN_MAX = 8

RowTokenCounter = Callable[[list[tuple[int, int]], list[dict[str, Any]]], int]


class Failure(BaseModel):
    """One failed check: its kind, where (config, split, row id) and why."""

    kind: str
    message: str
    config: str = ""
    split: str = ""
    row: str = ""


class ValidationReport(BaseModel):
    """All failures (the first `max_per_kind` of each kind kept in full, every one counted) and what was checked."""

    target: str
    revision: str | None = None
    max_per_kind: int = 20
    rows_checked: dict[str, dict[str, int]] = Field(default_factory=dict)
    failure_counts: dict[str, int] = Field(default_factory=dict)
    failures: list[Failure] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failure_counts

    def fail(self, kind: str, message: str, config: str = "", split: str = "", row: str = "") -> None:
        """Count a failure; keep its details while fewer than `max_per_kind` of its kind are kept."""
        self.failure_counts[kind] = self.failure_counts.get(kind, 0) + 1
        if self.failure_counts[kind] <= self.max_per_kind:
            self.failures.append(Failure(kind=kind, message=message, config=config, split=split, row=row))

    def to_json(self) -> str:
        """The report as JSON (what `longdocvqa validate --json` prints)."""
        return json.dumps({"ok": self.ok, **self.model_dump(mode="json")}, indent=1, ensure_ascii=False)


@dataclass
class DocEntry:
    splits: set[str]
    num_pages: int
    licence: str | None = None


@dataclass
class Seen:
    """What the row checks remember across configs (a few bytes per row)."""

    docs: dict[str, DocEntry] = field(default_factory=dict)
    qa: dict[str, str] = field(default_factory=dict)  # qa id -> document sha256
    sft_ids: set[str] = field(default_factory=set)
    rows: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    task_counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    task_tokens: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # page image digest -> decoded size: a document's pages recur in each of its rows and are decoded once (bounded)
    image_sizes: dict[bytes, tuple[int, int]] = field(default_factory=dict)


def validate_dataset(
    path_or_repo: str, revision: str | None = None, *, max_per_kind: int = 20, token: str | None = None
) -> ValidationReport:
    """Load `path_or_repo` (folder or Hub repo at `revision`) like a user and check every row and the card."""
    report = ValidationReport(target=str(path_or_repo), revision=revision, max_per_kind=max_per_kind)
    if not is_local(path_or_repo):
        check_reachable(path_or_repo, revision, token)  # an unreachable Hub is one error line, not four findings
    header, meta = check_card(path_or_repo, revision, report, token)
    seen = Seen()
    counter = exact_token_counter(meta.tokenizer, meta.min_pixels, meta.max_pixels) if meta else None
    if meta and counter is None:
        report.warnings.append(f"token_count: no offline tokenizer for {meta.tokenizer}; checked bounds only")
    target = (path_or_repo, revision, token)
    _run_config(report, "documents", target, lambda s, r: check_document(report, seen, s, r))
    _run_config(report, "qa", target, lambda s, r: check_qa_row(report, seen, s, r))
    _run_config(report, "sft", target, lambda s, r: check_sft(report, seen, s, r, meta, counter))
    report.rows_checked = {config: dict(seen.rows[config]) for config in ("sft", "qa", "documents")}
    if header is not None and meta is not None:
        check_counts(report, header, meta, seen)
    return report


def failure_counts(folder: str | Path) -> dict[str, int]:
    """Failed checks by kind of a dataset folder, empty when it validates: what `push_dataset` refuses on."""
    return validate_dataset(str(folder)).failure_counts


def _run_config(
    report: ValidationReport,
    config: str,
    target: tuple[str, str | None, str | None],
    check: Callable[[str, dict[str, Any]], None],
) -> None:
    """Stream one config through `check`; a loader error ends it as a `load` failure, a malformed row is a
    `schema` failure of that row."""
    path_or_repo, revision, token = target
    rows = iter_rows(path_or_repo, config, revision=revision, token=token)
    while True:
        try:
            split, row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # whatever the loader raises is a finding: the user's load_dataset would fail too
            report.fail("load", f"load_dataset({config!r}) failed: {type(exc).__name__}: {exc}", config=config)
            return
        try:
            check(split, row)
        except (KeyError, TypeError, AttributeError) as exc:
            row_id = str(row.get("id", row.get("sha256", "")))
            report.fail("schema", f"missing or mistyped column: {exc!r}", config=config, split=split, row=row_id)


# ---- card -----------------------------------------------------------------------------------------------------


def check_card(
    path_or_repo: str, revision: str | None, report: ValidationReport, token: str | None = None
) -> tuple[dict[str, Any] | None, CardMeta | None]:
    """Read and check the README's YAML header; returns (header, longdocvqa block) or Nones when unusable."""
    try:
        header, _ = split_card(read_card_text(path_or_repo, revision, token))
    except Exception as exc:  # missing file, network error or YAML syntax error: all mean "no usable card"
        report.fail("card", f"README.md unreadable: {type(exc).__name__}: {exc}")
        return None, None
    for key in REQUIRED_HEADER_KEYS:
        if key not in header:
            report.fail("card", f"YAML header lacks `{key}`")
    _check_card_configs(header, report)
    try:
        meta = CardMeta.model_validate(header.get(CARD_KEY) or {})
    except ValidationError as exc:
        report.fail("card", f"`{CARD_KEY}` block invalid: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        return header, None
    return header, meta


def _check_card_configs(header: dict[str, Any], report: ValidationReport) -> None:
    try:
        configs = {c["config_name"]: c for c in header.get("configs") or []}
    except (TypeError, KeyError):
        report.fail("card", "`configs` is not a list of {config_name, data_files}")
        return
    for name in CONFIGS:
        if name not in configs:
            report.fail("card", f"`configs` lacks the `{name}` config")
    if not (configs.get(DEFAULT_CONFIG) or {}).get("default"):
        report.fail("card", f"`{DEFAULT_CONFIG}` is not marked `default: true`")
    if header.get("license") == "other" and not (header.get("license_name") and header.get("license_link")):
        report.fail("card", "`license: other` needs `license_name` and `license_link` (the Hub shows them)")


def check_counts(report: ValidationReport, header: dict[str, Any], meta: CardMeta, seen: Seen) -> None:
    """The card's recorded counts, token totals and task shares against what the rows hold."""
    for config, per_split in seen.rows.items():
        recorded = meta.counts.get(config, {})
        if dict(per_split) != recorded:
            message = f"card records {_split_counts(recorded)} rows, the data has {_split_counts(per_split)}"
            report.fail("card_counts", message, config=config)
    for config, recorded in _dataset_info_counts(header).items():
        found = dict(seen.rows.get(config, {}))
        if recorded != found:
            message = f"dataset_info records {_split_counts(recorded)} rows, the data has {_split_counts(found)}"
            report.fail("card_counts", message, config=config)
    _compare(report, "task_counts", meta.task_counts, seen.task_counts)
    _compare(report, "task_tokens", meta.task_tokens, seen.task_tokens)
    total = sum(sum(c.values()) for c in seen.task_tokens.values())
    if total != meta.num_tokens_total:
        report.fail("card_counts", f"card records {meta.num_tokens_total} tokens in total, rows sum to {total}", "sft")
    shares = measured_shares(seen.task_tokens if meta.mixture_unit == "tokens" else seen.task_counts)
    for task in sorted(set(shares) | set(meta.task_shares)):
        if abs(shares.get(task, 0.0) - meta.task_shares.get(task, 0.0)) > _SHARE_TOLERANCE:
            report.fail(
                "task_share",
                f"{task}: card records share {meta.task_shares.get(task, 0.0):.4f}, "
                f"rows give {shares.get(task, 0.0):.4f} (by {meta.mixture_unit})",
                config="sft",
            )


def _split_counts(counts: Mapping[str, int]) -> str:
    return " + ".join(f"{counts[split]} {split}" for split in ordered_splits(counts)) or "0"


def _compare(
    report: ValidationReport, name: str, recorded: Mapping[str, Any], found: Mapping[str, Counter[str]]
) -> None:
    actual = {split: dict(c) for split, c in found.items()}
    if {s: dict(v) for s, v in recorded.items()} != actual:
        report.fail("card_counts", f"card `{name}` {dict(recorded)} != rows {actual}", config="sft")


def _dataset_info_counts(header: dict[str, Any]) -> dict[str, dict[str, int]]:
    infos = header.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    return {
        info.get("config_name", "default"): {s["name"]: s["num_examples"] for s in info.get("splits") or []}
        for info in infos
        if isinstance(info, dict)
    }


def measured_shares(per_split: Mapping[str, Counter[str]]) -> dict[str, float]:
    """Share of each task over all splits."""
    totals: Counter[str] = Counter()
    for counts in per_split.values():
        totals.update(counts)
    whole = sum(totals.values()) or 1
    return {task: value / whole for task, value in totals.items()}


# ---- rows -----------------------------------------------------------------------------------------------------


def check_document(report: ValidationReport, seen: Seen, split: str, row: dict[str, Any]) -> None:
    """A `documents` row: unique sha256, one split, page sizes for every page, the embedded PDF (if any) is the file
    its sha256 names."""
    sha = row["sha256"]
    seen.rows["documents"][split] += 1
    where = {"config": "documents", "split": split, "row": sha}
    if sha in seen.docs:
        other = sorted(seen.docs[sha].splits)[0]
        kind = "split_leak" if other != split else "duplicate_id"
        report.fail(kind, f"document listed in {other!r} and again in {split!r}", **where)
        seen.docs[sha].splits.add(split)
        return
    seen.docs[sha] = DocEntry({split}, row["num_pages"], row["licence"])
    pdf = row.get("pdf")
    if pdf is not None and hashlib.sha256(pdf.get("bytes") or b"").hexdigest() != sha:
        report.fail("pdf_mismatch", "the embedded PDF's sha256 is not the row's sha256", **where)
    if row["num_pages"] < 1 or len(row["page_sizes_pt"] or []) != row["num_pages"]:
        report.fail(
            "schema", f"num_pages {row['num_pages']} but {len(row['page_sizes_pt'] or [])} page sizes", **where
        )


def check_qa_row(report: ValidationReport, seen: Seen, split: str, row: dict[str, Any]) -> None:
    """A `qa` row: JSON Schema, unique id, its document, its split, segment and evidence pages."""
    seen.rows["qa"][split] += 1
    where = {"config": "qa", "split": split, "row": str(row.get("id"))}
    record = qa_record_from_row(row)
    for problem in schema_problems(record):
        report.fail("schema", problem, **where)
    if row["id"] in seen.qa:
        report.fail("duplicate_id", "id already used by another qa row", **where)
    seen.qa[row["id"]] = row["doc_sha256"]
    doc = _document(report, seen, row["doc_sha256"], split, where)
    if doc is None:
        return
    _check_licence(report, row, doc, where)
    start, end = row["segment_start"], row["segment_end"]
    if not 1 <= start <= end <= doc.num_pages:
        report.fail("segment", f"segment pages {start}-{end} outside the document's 1-{doc.num_pages}", **where)
    for page in row["evidence_pages"] or []:
        if not 1 <= page <= doc.num_pages:
            report.fail("evidence_page", f"evidence page {page} outside the document's 1-{doc.num_pages}", **where)
        elif not start <= page <= end:
            report.fail("evidence_page", f"evidence page {page} outside the recorded segment {start}-{end}", **where)


def _check_licence(report: ValidationReport, row: dict[str, Any], doc: DocEntry, where: dict[str, str]) -> None:
    """A row carries its document's licence (so training data can be filtered by licence without a join)."""
    if row["licence"] != doc.licence:
        report.fail("licence", f"row licence {row['licence']!r}, its document's {doc.licence!r}", **where)


def schema_problems(record: dict[str, Any]) -> list[str]:
    """JSON Schema errors of a qa record against QARow and, for the QA part of a generated QA, against QA (the
    generator's model: at most 16 evidence pages, which an ocr-full target of a whole segment can exceed)."""
    import jsonschema

    problems = []
    checks: list[tuple[dict[str, Any], dict[str, Any]]] = [(_schema(QARow), record)]
    if record.get("task") not in OCR_TASKS:  # an OCR target is a transcription, not a generated QA (every page)
        checks.append((_schema(QA), {key: record.get(key) for key in QA.model_fields}))
    for schema, data in checks:
        for error in jsonschema.Draft202012Validator(schema).iter_errors(data):
            where = "/".join(str(p) for p in error.absolute_path) or "(row)"
            problems.append(f"{where}: {error.message[:200]}")
    return problems


_SCHEMAS: dict[str, dict[str, Any]] = {}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    if model.__name__ not in _SCHEMAS:
        _SCHEMAS[model.__name__] = model.model_json_schema()
    return _SCHEMAS[model.__name__]


def _document(report: ValidationReport, seen: Seen, sha: str, split: str, where: dict[str, str]) -> DocEntry | None:
    doc = seen.docs.get(sha)
    if doc is None:
        report.fail("missing_document", f"document {sha[:16]} is not in the `documents` config", **where)
    elif split not in doc.splits:
        report.fail("split_leak", f"row is in {split!r} but its document is in {sorted(doc.splits)}", **where)
    return doc


def check_sft(
    report: ValidationReport,
    seen: Seen,
    split: str,
    row: dict[str, Any],
    meta: CardMeta | None,
    counter: RowTokenCounter | None,
) -> None:
    """An `sft` row: unique id, document, images = pages, placeholders, turns, its qa row, token length."""
    where = {"config": "sft", "split": split, "row": str(row.get("id"))}
    seen.rows["sft"][split] += 1
    seen.task_counts[split][row["task"]] += 1
    seen.task_tokens[split][row["task"]] += row["num_tokens"]
    if row["id"] in seen.sft_ids:
        report.fail("duplicate_id", "id already used by another sft row", **where)
    seen.sft_ids.add(row["id"])
    images = row["images"] or []
    if row["doc_id"]:  # short-data rows (task "short") have no document
        doc = _document(report, seen, row["doc_id"], split, where)
        if doc is not None and (len(images) != doc.num_pages or row["num_pages"] != doc.num_pages):
            message = f"{len(images)} images, num_pages {row['num_pages']}, document has {doc.num_pages} pages"
            report.fail("image_count", message, **where)
        if doc is not None:
            _check_licence(report, row, doc, where)
    elif row["num_pages"] != len(images):
        report.fail("image_count", f"{len(images)} images, num_pages {row['num_pages']}", **where)
    _check_messages(report, row, where)
    sizes = _decoded_sizes(report, images, where, seen.image_sizes)
    if row.get("qa_id") is not None and seen.qa.get(row["qa_id"], row["doc_id"]) != row["doc_id"]:
        report.fail("qa_link", f"qa row {row['qa_id']} is about another document", **where)
    elif row.get("qa_id") is not None and row["qa_id"] not in seen.qa:
        report.fail("qa_link", f"qa row {row['qa_id']} not found in the `qa` config", **where)
    if meta is not None and sizes is not None:
        _check_tokens(report, row, sizes, meta, counter, where)


def _decoded_sizes(
    report: ValidationReport, images: list[Any], where: dict[str, str], known: dict[bytes, tuple[int, int]]
) -> list[tuple[int, int]] | None:
    """Pixel sizes of the row's images, each decoded in full (once per distinct image, remembered in `known`);
    None (and one `image` failure) when one does not decode."""
    sizes = []
    for page, image in enumerate(images, start=1):
        data = image.get("bytes") if isinstance(image, dict) else None
        digest = hashlib.blake2b(data, digest_size=16).digest() if data else None
        if digest is not None and digest in known:
            sizes.append(known[digest])
            continue
        try:
            size = tokens.decoded_size_px(image)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            report.fail("image", f"page {page}: {exc}", **where)
            return None
        if digest is not None:
            if len(known) >= _KNOWN_IMAGES:
                known.clear()
            known[digest] = size
        sizes.append(size)
    return sizes


_KNOWN_IMAGES = 200_000  # ~30 MB of digests and sizes: a few thousand documents' pages


def _check_messages(report: ValidationReport, row: dict[str, Any], where: dict[str, str]) -> None:
    messages = row["messages"] or []
    roles = [m["role"] for m in messages]
    if not roles or roles[-1] != "assistant" or "user" not in roles:
        report.fail("messages", f"turns {roles}: need a user turn and a final assistant turn", **where)
    images = sum(1 for m in messages for b in m["content"] or [] if b["type"] == "image")
    if images != len(row["images"] or []):
        report.fail("placeholders", f"{images} image blocks for {len(row['images'] or [])} images", **where)


def _check_tokens(
    report: ValidationReport,
    row: dict[str, Any],
    sizes: list[tuple[int, int]],
    meta: CardMeta,
    counter: RowTokenCounter | None,
    where: dict[str, str],
) -> None:
    recorded = row["num_tokens"]
    if not meta.min_tokens <= recorded <= meta.max_tokens:
        report.fail(
            "token_window", f"num_tokens {recorded} outside the window {meta.min_tokens}-{meta.max_tokens}", **where
        )
    if counter is not None:
        exact = counter(sizes, row["messages"])
        if exact != recorded:
            report.fail("token_count", f"num_tokens {recorded} but the recount gives {exact}", **where)
        return
    low, high = token_bounds(sizes, row["messages"], meta.min_pixels, meta.max_pixels)
    if not low <= recorded <= high:
        report.fail(
            "token_count",
            f"num_tokens {recorded} impossible for these images and text: must lie in {low}-{high}",
            **where,
        )


# ---- token accounting -----------------------------------------------------------------------------------------


def exact_token_counter(tokenizer: str, min_pixels: int, max_pixels: int) -> RowTokenCounter | None:
    """The exact Qwen2.5-VL length of an sft row from its image sizes and messages (longdocvqa.assembly.tokens);
    None when no Qwen2 tokenizer is available offline, and `validate` then checks `token_bounds` instead and warns."""
    try:
        counter = tokens.TokenCounter.load(tokenizer, min_pixels, max_pixels)
    except (StageError, OSError):
        return None

    def count(sizes: list[tuple[int, int]], messages: list[dict[str, Any]]) -> int:
        pixels = sum(counter.image_tokens(width, height) for width, height in sizes)
        return counter.count_chats([messages], [pixels])[0]

    return count


def token_bounds(
    sizes: list[tuple[int, int]], messages: list[dict[str, Any]], min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Bounds on a row's length without the tokenizer: image tokens are exact; text costs at most one token per
    UTF-8 byte (byte-level BPE) plus the chat template's markers."""
    vision = sum(tokens.image_tokens(w, h, min_pixels, max_pixels) + tokens.VISION_MARKERS for w, h in sizes)
    text_bytes = sum(len((b.get("text") or "").encode("utf-8")) for m in messages for b in m["content"] or [])
    low = vision + _TOKENS_PER_TURN_MIN * len(messages)
    high = vision + text_bytes + _TOKENS_PER_TURN_MAX * len(messages) + _TEMPLATE_OVERHEAD_MAX
    return low, high
