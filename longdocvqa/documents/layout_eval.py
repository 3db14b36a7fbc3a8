"""Layout quality against ground truth (pure): block labels, headings without the outline, segment starts.

- Labels: each predicted block is scored against the smallest hand-labelled truth block that contains its
  centre (tests/data/layout_truth.json); precision per label = right / predicted, recall per label =
  truth blocks of that label hit by at least one predicted block of the same label. `header` and `footer`
  are also scored together as `header/footer` (running furniture either way).
- Headings: the PDF outline is the truth and is hidden from the layout; a predicted `title`/`section` block
  of level 1-2 is right when it matches an outline entry of any level on its page; recall is over the
  outline's level 1-2 entries found as a heading block of any level on their page.
- Segment starts: a segment sampled with the outline hidden is aligned when its first page is a page where
  an outline entry starts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from longdocvqa.core.records import Block, LayoutDoc, OutlineEntry, Segment
from longdocvqa.documents.headings import normalise_title

Box = Sequence[float]
FURNITURE = ("header", "footer")


@dataclass
class LabelScores:
    """Counts behind per-label precision and recall."""

    predicted: Counter[str] = field(default_factory=Counter)
    right: Counter[str] = field(default_factory=Counter)
    truth: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)

    def precision(self, label: str | None = None) -> float:
        """Share of predicted blocks (of `label`, or all) whose label is right; 1.0 when none predicted."""
        num = sum(self.right.values()) if label is None else self.right[label]
        den = sum(self.predicted.values()) if label is None else self.predicted[label]
        return num / den if den else 1.0

    def recall(self, label: str | None = None) -> float:
        num = sum(self.found.values()) if label is None else self.found[label]
        den = sum(self.truth.values()) if label is None else self.truth[label]
        return num / den if den else 1.0


def _centre_in(inner: Box, outer: Box, slack: float = 1.0) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] - slack <= cx <= outer[2] + slack and outer[1] - slack <= cy <= outer[3] + slack


def _area(box: Box) -> float:
    return max(box[2] - box[0], 0.1) * max(box[3] - box[1], 0.1)


def score_page(blocks: Iterable[Block], truth: Sequence[dict], scores: LabelScores) -> None:
    """Add one page's predicted blocks to `scores`; `truth` is that page's list of {"bbox", "label"}."""
    exact: set[int] = set()
    furniture: set[int] = set()
    for block in blocks:
        home = _home(block.bbox, truth)
        truth_label = truth[home]["label"] if home is not None else None
        for key in _keys(block.label):
            scores.predicted[key] += 1
            scores.right[key] += truth_label == block.label or key == "header/footer" and truth_label in FURNITURE
        if home is not None and truth_label == block.label:
            exact.add(home)
        if home is not None and block.label in FURNITURE and truth_label in FURNITURE:
            furniture.add(home)
    for i, item in enumerate(truth):
        for key in _keys(item["label"]):
            scores.truth[key] += 1
            scores.found[key] += i in (furniture if key == "header/footer" else exact)


def _home(bbox: Box, truth: Sequence[dict]) -> int | None:
    """The smallest truth block containing the centre of `bbox`."""
    homes = [i for i, t in enumerate(truth) if _centre_in(bbox, t["bbox"])]
    return min(homes, key=lambda i: _area(truth[i]["bbox"])) if homes else None


def _keys(label: str) -> list[str]:
    return [label, "header/footer"] if label in FURNITURE else [label]


@dataclass
class HeadingScores:
    predicted: int = 0
    right: int = 0
    truth: int = 0
    found: int = 0

    @property
    def precision(self) -> float:
        return self.right / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.truth if self.truth else 1.0


def _matches(text: str, title: str) -> bool:
    norm, ref = normalise_title(text), normalise_title(title)
    if not norm or not ref:
        return False
    prefixed = norm.endswith(ref) and len(ref) >= 4 and len(norm) <= len(ref) + 12
    return norm == ref or prefixed or ref.endswith(norm) and len(norm) >= 6


def score_headings(hidden: LayoutDoc, outline: Sequence[OutlineEntry], scores: HeadingScores) -> None:
    """`hidden` was parsed without its outline; `outline` is the PDF's real outline (the truth)."""
    by_page: dict[int, list[OutlineEntry]] = {}
    for entry in outline:
        by_page.setdefault(entry.page, []).append(entry)
    heads: dict[int, list[Block]] = {}
    for page in hidden.pages:
        heads[page.index] = [b for b in page.blocks if b.label in ("title", "section")]
        for block in heads[page.index]:
            if block.label == "title" or (block.level or 3) > 2:  # the document title is no outline level
                continue
            scores.predicted += 1
            scores.right += any(_matches(block.text, e.title) for e in by_page.get(page.index, []))
    for entry in outline:
        if entry.level <= 2 and 1 <= entry.page <= hidden.num_pages:
            scores.truth += 1
            scores.found += any(_matches(b.text, entry.title) for b in heads.get(entry.page, []))


def aligned_starts(segments: Iterable[Segment], outline: Sequence[OutlineEntry]) -> tuple[int, int]:
    """(aligned, total): segments whose first page is a page where an outline entry starts."""
    starts = {e.page for e in outline}
    items = list(segments)
    return sum(s.start_page in starts for s in items), len(items)
