"""The plan's rules: which (document, task) units a build needs, decided from page sizes alone, before paying.

Runs right after pool and decontamination. A document's full-document example length is exact for its images
(tokens.py: page sizes, render DPI, Qwen2.5-VL's resize) plus a small estimate for the text (question, answer,
page labels). Documents whose length falls outside the window are dropped here, before any layout or rendering.
Each (document, task) unit stands for `segment.per_document x generate.questions_per_segment` estimated
candidates; the deficit round robin of assemble.py, over the same streams (a task, or a task and a token bin)
and the same distribution keys, draws units until (1 + plan.overdraw) x the budget is covered, the unit that
crosses it included, or until a stream runs dry (where the assembly would stop too). Every stream orders the
documents by one seeded draw per document, so tasks share their documents and few documents are laid out.

After generation, `dry_streams` replays the assembly's sampling on the real candidates; a stream that runs dry
before the budget is full (more drops than the margin) gets the next units of its own order (`Planner.more`),
round after round, until the budget and mixture are met or the pool runs out. The plan is a function of
(recipe, pool contents, seed) and of the stored generation results, never of worker count or timing. A larger
budget draws a longer prefix of the same streams (a superset of the units), a smaller one a prefix (a subset).
Does not own: files, rendering, model calls or the run directory (stages/plan.py runs the plan stage and its
rounds, and stores the plan as plan.json).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from longdocvqa.assembly.sampling import Candidate, fill_streams, streams, unit_draw
from longdocvqa.assembly.tokens import page_image_tokens
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import QA_TASKS, PdfDoc, Reject

STAGE = "plan"
PLAN_VERSION = 1
EST_LABEL_TOKENS = 5  # "\nPage 17: "
EST_QA_TEXT_TOKENS = 80  # system prompt + question + answer + role tokens
EST_PROMPT_TEXT_TOKENS = 700  # a generation prompt's instructions and exemplars, without page text
EST_PAGE_TEXT_TOKENS = 600  # one page's text layer, for input_mode text / images+text
EST_OUTPUT_TOKENS = 200  # one generation reply (evidence description + QA as JSON)
EST_VERIFY_PAGES = 2  # evidence pages a verifier sees
EST_ERROR_TOKENS = 1_000  # how far an example's exact length may be from its estimate (question and answer text)
_GENERATOR_MIN_PIXELS = 3136  # the serving model's own processor floor


@dataclass(frozen=True, slots=True)
class DocSize:
    """What the plan needs of a document: its id, its file and its page sizes as (width_pt, height_pt, pages) runs."""

    sha256: str
    path: str
    sizes: tuple[tuple[float, float, int], ...]

    @property
    def num_pages(self) -> int:
        return sum(count for _, _, count in self.sizes)

    @classmethod
    def from_doc(cls, doc: PdfDoc) -> DocSize:
        counts = Counter((float(w), float(h)) for w, h in doc.page_sizes_pt)
        return cls(doc.sha256, doc.path, tuple((w, h, n) for (w, h), n in sorted(counts.items())))


class PlanUnit(BaseModel):
    """One (document, task) unit: the model calls of one task on the segments of one document."""

    sha256: str
    task: str
    round: int = Field(0, description="0: the initial plan; k: drawn in top-up round k")


class BuildPlan(BaseModel):
    """The units a build generates, in draw order; stored as OUT/plan.json and reused while `key` matches."""

    key: str = Field(description="hash of the plan's inputs: recipe settings, seed and the pool's documents")
    version: int = PLAN_VERSION
    units: list[PlanUnit]

    def tasks_by_doc(self) -> dict[str, list[str]]:
        tasks: dict[str, list[str]] = defaultdict(list)
        for unit in self.units:
            tasks[unit.sha256].append(unit.task)
        return dict(tasks)

    def documents(self) -> set[str]:
        return {unit.sha256 for unit in self.units}

    @property
    def rounds(self) -> int:
        return max((unit.round for unit in self.units), default=0)


def plan_key(recipe: Recipe, shas: Iterable[str]) -> str:
    """What the plan depends on: the settings below, the seed and the set of pool documents (by sha256)."""
    settings = {
        "v": PLAN_VERSION, "seed": recipe.seed, "assemble": recipe.assemble.model_dump(mode="json"),
        "plan": recipe.plan.model_dump(mode="json"), "dpi": recipe.render.dpi, "tasks": recipe.generate.tasks,
        "per_document": recipe.segment.per_document, "questions": recipe.generate.questions_per_segment,
    }  # fmt: skip
    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    for sha in sorted(shas):
        digest.update(sha.encode())
    return digest.hexdigest()[:16]


def unit_key(sha256: str, tasks: Sequence[str] | None, all_tasks: Sequence[str]) -> str:
    """Storage key of a document's generation output for a subset of tasks (the bare sha256 for all of them)."""
    if tasks is None or set(all_tasks) <= set(tasks):
        return sha256
    return f"{sha256}.{'+'.join(sorted(set(tasks)))}"


def load_plan(path: Path, key: str) -> BuildPlan | None:
    """The stored plan when it was made from the same inputs, else None."""
    if not path.is_file():
        return None
    try:
        stored = BuildPlan.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return stored if stored.key == key and stored.version == PLAN_VERSION else None


# ---------------------------------------------------------------------------------------------- the planner


class Planner:
    """Estimated lengths and the seeded unit order of every stream, computed once per build from page sizes."""

    def __init__(self, docs: Sequence[DocSize], recipe: Recipe) -> None:
        import numpy as np

        self.recipe, self.cfg = recipe, recipe.assemble
        self.makes_model_calls = recipe.generate.generator.kind != "template"  # the template generator calls none
        self.docs = sorted(docs, key=lambda d: d.sha256)
        self.key = plan_key(recipe, (d.sha256 for d in self.docs))
        self.per_unit = recipe.segment.per_document * recipe.generate.questions_per_segment
        lengths = [self._length(doc) for doc in self.docs]
        self.tokens = np.array([n if n is not None else -1 for n in lengths], dtype=np.int64)
        self.window_rejects = [self._window_reject(d, n) for d, n in zip(self.docs, lengths, strict=True)]
        inside = np.array([r is None for r in self.window_rejects], dtype=bool)
        draws = np.array([unit_draw(recipe.seed, f"plan:{d.sha256}") for d in self.docs], dtype=np.float64)
        order = np.argsort(self._keys(draws), kind="stable")
        self.order = order[inside[order]]
        self.streams = self._stream_orders()

    def _length(self, doc: DocSize) -> int | None:
        cfg, dpi, cap = self.cfg, self.recipe.render.dpi, self.recipe.render.max_pixels
        try:
            image = sum(n * page_image_tokens(w, h, dpi, cfg.min_pixels, cfg.max_pixels, cap) for w, h, n in doc.sizes)
        except ValueError:
            return None
        labels = doc.num_pages * EST_LABEL_TOKENS if cfg.page_labels else 0
        return image + labels + EST_QA_TEXT_TOKENS

    def _window_reject(self, doc: DocSize, tokens: int | None) -> Reject | None:
        cfg = self.cfg
        if tokens is None:
            detail = "a page's aspect ratio is beyond Qwen2.5-VL's limit"
        elif tokens > cfg.max_tokens:
            detail = f"about {tokens:,} tokens (images exact) > max_tokens {cfg.max_tokens:,}; never rendered"
        elif tokens < cfg.min_tokens:
            detail = f"about {tokens:,} tokens (images exact) < min_tokens {cfg.min_tokens:,}; never rendered"
        else:
            return None
        return Reject(stage=STAGE, item=doc.path, reason="window", detail=detail, extra={"sha256": doc.sha256})

    def _keys(self, draws: Any) -> Any:
        """Smaller first: the document's draw u, or the long-biased Efraimidis-Spirakis key (as assemble.py)."""
        import numpy as np

        if self.cfg.distribution != "long-biased":
            return draws
        span = max(1, self.cfg.max_tokens - self.cfg.min_tokens)
        x = np.clip((self.tokens - self.cfg.min_tokens) / span, 0.0, 1.0)
        return -np.log(draws) * np.exp(-self.cfg.long_bias * x)

    def _stream_orders(self) -> list[_PlanStream]:
        """One stream per task (or task and token bin) with a share, named as assemble.py names them."""
        import numpy as np

        cfg = self.cfg
        bins = cfg.target_bins() if cfg.distribution == "target" else [(0, 0, 1.0)]
        lengths = self.tokens[self.order]
        streams = []
        for task, task_share in cfg.mixture.items():
            for lo, hi, bin_share in bins:
                if task_share * bin_share <= 0:
                    continue
                docs = self.order if task in self.recipe.generate.tasks else self.order[:0]
                name: str = task
                if cfg.distribution == "target":
                    last = hi == bins[-1][1]
                    docs = docs[(lengths >= lo) & ((lengths < hi) | (last & (lengths == hi)))]
                    name = f"{task}[{lo}-{hi}]"
                streams.append(_PlanStream(name, str(task), task_share * bin_share, np.asarray(docs)))
        return streams

    # -- drawing

    @property
    def long_budget(self) -> float | None:
        budget = self.cfg.budget_tokens
        return None if budget is None else budget * (1 - self.cfg.short_data.share)

    def initial(self) -> BuildPlan:
        """Units until (1 + overdraw) x the budget is covered (every unit in the window without a budget).

        Where the budget itself is crossed, the assembly's next pick goes to the stream furthest below its share;
        exact lengths differ from the estimates by a few hundred tokens, so every stream within that error of the
        furthest one keeps one unit in reserve too (small budgets; with large ones the margin covers it)."""
        budget = self.long_budget
        target = None if budget is None else budget * (1 + self.recipe.plan.overdraw)
        picked: dict[tuple[str, str], None] = {}
        for stream in self.streams:
            stream.pos, stream.used = 0, 0.0
        active = [s for s in self.streams if s.share > 0]
        total, reserve = 0, dict[str, int]()
        while active and (target is None or total < target):
            stream = min(active, key=lambda s: s.progress)  # ties: the first in mixture order
            if stream.pos == len(stream.docs):
                if target is None:
                    active.remove(stream)
                    continue
                break  # the assembly stops at a dry stream too (rescale), or fails (stop)
            tokens = self._take(stream, picked)
            if budget is not None and not reserve and total + tokens > budget:
                reserve = {s.name: s.pos for s in self._near(active, stream)}
            total += tokens
        for stream in self.streams:  # a reserve unit for near-tied streams not drawn from since the crossing
            if reserve.get(stream.name) == stream.pos and stream.pos < len(stream.docs):
                self._take(stream, picked)
        return BuildPlan(key=self.key, units=[PlanUnit(sha256=sha, task=task) for sha, task in picked])

    def _take(self, stream: _PlanStream, picked: dict[tuple[str, str], None]) -> int:
        """Draw the stream's next unit; returns its estimated tokens (all its QAs)."""
        index = int(stream.docs[stream.pos])
        stream.pos += 1
        tokens = int(self.tokens[index]) * self.per_unit
        stream.used += tokens if self.cfg.mixture_unit == "tokens" else self.per_unit
        picked[(self.docs[index].sha256, stream.task)] = None
        return tokens

    def _near(self, active: list[_PlanStream], crossing: _PlanStream) -> list[_PlanStream]:
        """Streams whose progress, before the crossing pick, was within the estimates' error of the crossing one."""
        if self.cfg.mixture_unit == "examples":
            return []
        before = crossing.used - int(self.tokens[int(crossing.docs[crossing.pos - 1])]) * self.per_unit
        error = EST_ERROR_TOKENS * self.per_unit
        low = before / crossing.share + error * crossing.pos / crossing.share
        return [s for s in active if s is not crossing and s.progress - error * s.pos / s.share <= low]

    def more(self, plan: BuildPlan, deficits: Mapping[str, float], round_: int) -> list[PlanUnit]:
        """Top-up: for each dry stream, its next unplanned units until (1 + overdraw) x its deficit is covered
        (at least one unit); [] when the pool has none left for any of them."""
        have = {(u.sha256, u.task) for u in plan.units}
        new: list[PlanUnit] = []
        for stream in self.streams:
            if stream.name not in deficits:
                continue
            need = max(deficits[stream.name], 0.0) * (1 + self.recipe.plan.overdraw)
            got = 0.0
            for index in stream.docs:
                sha = self.docs[int(index)].sha256
                if (sha, stream.task) in have:
                    continue
                new.append(PlanUnit(sha256=sha, task=stream.task, round=round_))
                have.add((sha, stream.task))
                tokens = int(self.tokens[int(index)])
                got += (tokens if self.cfg.mixture_unit == "tokens" else 1) * self.per_unit
                if got >= need:
                    break
        return new

    def mean_tokens(self, stream_name: str) -> float:
        stream = next(s for s in self.streams if s.name == stream_name)
        return float(self.tokens[stream.docs].mean()) if len(stream.docs) else 0.0

    # -- accounting

    def rejects(self, plan: BuildPlan) -> list[Reject]:
        """A line per pool document the plan does not use: outside the window, or not needed by the budget."""
        used = plan.documents()
        lines = [r for r in self.window_rejects if r is not None]
        for doc, window in zip(self.docs, self.window_rejects, strict=True):
            if window is None and doc.sha256 not in used:
                detail = "not drawn: the plan covers the budget and mixture without it"
                lines.append(Reject(stage=STAGE, item=doc.path, reason="budget", detail=detail,
                                    extra={"sha256": doc.sha256}))  # fmt: skip
        return lines

    def generate_everything_calls(self) -> int:
        """Model calls of the path that generates every task for every document in the pool's page range."""
        return len(self.docs) * self.calls_per_unit("extract-single") * len(self.recipe.generate.tasks)

    def calls_per_unit(self, task: str) -> int:
        if not self.makes_model_calls or task not in QA_TASKS:
            return 0
        return self.per_unit + sum(calls for calls, _ in self.review_calls(task).values())

    def review_calls(self, task: str) -> dict[str, tuple[int, int]]:
        """Review calls of one unit by role, {role: (calls, pages each sees)}: the verifier and the judge see only
        the evidence pages, multi-page necessity one evidence page per call."""
        gen, out = self.recipe.generate, {}
        if not self.makes_model_calls or task not in QA_TASKS:
            return {}
        if gen.verify.enabled:
            out["verify"] = (self.per_unit, EST_VERIFY_PAGES)
        if gen.verify.multi_page != "off" and task in ("extract-multi", "reasoning"):
            out["multi_page"] = (self.per_unit * EST_VERIFY_PAGES, 1)
        if gen.judge.enabled:
            out["judge"] = (self.per_unit, EST_VERIFY_PAGES)
        return out

    def forecast(self, plan: BuildPlan) -> dict[str, dict[str, Any]]:
        """Per task: units, documents, estimated examples and tokens, model calls, prompt (image + text) and
        output tokens, and cost when the endpoint has prices."""
        by_sha = {doc.sha256: (i, doc) for i, doc in enumerate(self.docs)}
        rows: dict[str, dict[str, Any]] = {}
        for unit in plan.units:
            index, doc = by_sha[unit.sha256]
            row = rows.setdefault(unit.task, _empty_row())
            row["units"] += 1
            row["documents"].add(unit.sha256)
            row["examples"] += self.per_unit
            row["example_tokens"] += int(self.tokens[index]) * self.per_unit
            self._add_calls(row, doc, unit.task)
        for row in rows.values():
            row["documents"] = len(row["documents"])
            row.update(self._cost(row))
        return dict(sorted(rows.items()))

    def _add_calls(self, row: dict[str, Any], doc: DocSize, task: str) -> None:
        calls = self.calls_per_unit(task)
        if not calls:
            return
        gen, seg = self.recipe.generate, self.recipe.segment
        pages = min(doc.num_pages, round((seg.min_pages + seg.max_pages) / 2))
        image, text = self._page_prompt_tokens(doc)
        review = self.review_calls(task)
        pages_seen = pages * self.per_unit + sum(n * seen for n, seen in review.values())
        row["calls"] += calls
        row["image_tokens"] += round(image * pages_seen)
        text_pages = pages_seen if gen.input_mode != "images" else 0
        row["text_tokens"] += EST_PROMPT_TEXT_TOKENS * calls + round(text * text_pages)
        row["output_tokens"] += EST_OUTPUT_TOKENS * calls
        for role, (n, _) in review.items():  # calls of each review role, included in `calls`
            row.setdefault("review_calls", {}).setdefault(role, 0)
            row["review_calls"][role] += n

    def _page_prompt_tokens(self, doc: DocSize) -> tuple[float, float]:
        """(image tokens, text tokens) of one page as the generator sees it, averaged over the document."""
        gen = self.recipe.generate
        if gen.input_mode == "text":
            return 0.0, EST_PAGE_TEXT_TOKENS
        dpi, cap = self.recipe.render.dpi, self.recipe.render.max_pixels
        image = sum(
            n * page_image_tokens(w, h, dpi, _GENERATOR_MIN_PIXELS, gen.max_pixels, cap) for w, h, n in doc.sizes
        )
        return image / max(1, doc.num_pages), EST_PAGE_TEXT_TOKENS

    def _cost(self, row: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.recipe.generate.generator.endpoint
        prompt = row["image_tokens"] + row["text_tokens"]
        out: dict[str, Any] = {"prompt_tokens": prompt}
        if endpoint.price_input_per_mtok is not None or endpoint.price_output_per_mtok is not None:
            cost = prompt * (endpoint.price_input_per_mtok or 0.0) + row["output_tokens"] * (
                endpoint.price_output_per_mtok or 0.0
            )
            out["cost_usd"] = round(cost / 1e6, 4)
        return out


@dataclass
class _PlanStream:
    name: str
    task: str
    share: float
    docs: Any  # numpy array of document indices, in draw order
    pos: int = 0
    used: float = 0.0

    @property
    def progress(self) -> float:
        return self.used / self.share


def _empty_row() -> dict[str, Any]:
    keys = ("units", "examples", "example_tokens", "calls", "image_tokens", "text_tokens", "output_tokens")
    return {**dict.fromkeys(keys, 0), "documents": set()}


# ---------------------------------------------------------------------------------------------- after generation


def dry_streams(candidates: Sequence[Candidate], planner: Planner) -> dict[str, float]:
    """Streams that run dry before the budget is full when the assembly samples these real candidates, each with
    its deficit (tokens, or examples for mixture_unit examples); {} when the budget and mixture are met."""
    cfg, budget = planner.cfg, planner.long_budget
    if budget is None:
        return {}
    by_stream = streams(candidates, cfg)
    _, shortfall = fill_streams(by_stream, budget, cfg.mixture_unit, "rescale")
    if shortfall is None:
        return {}
    deficits = {}
    for stream in by_stream:
        if stream.pos == len(stream.items):
            want = stream.share * budget
            if cfg.mixture_unit == "examples":
                mean = planner.mean_tokens(stream.name)
                want = want / mean if mean else 0.0
            deficits[stream.name] = max(1.0, want - stream.used)
    return deficits


def actual_usage(usage: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task, what generation really sent: calls, prompt and output tokens, cost (generator and verifier)."""
    rows: dict[str, dict[str, Any]] = {}
    for client in usage.values():
        for task, entry in client.get("by_task", {}).items():
            row = rows.setdefault(task, {"calls": 0, "prompt_tokens": 0, "output_tokens": 0})
            row["calls"] += entry.get("calls", 0)
            row["prompt_tokens"] += entry.get("prompt_tokens", 0)
            row["output_tokens"] += entry.get("completion_tokens", 0)
            if "cost_usd" in entry:
                row["cost_usd"] = round(row.get("cost_usd", 0.0) + entry["cost_usd"], 6)
    return dict(sorted(rows.items()))


def compare(predicted: Mapping[str, Mapping[str, Any]], actual: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{task: {predicted_calls, actual_calls, predicted_prompt_tokens, ...}} for the manifest."""
    out = {}
    for task in sorted(set(predicted) | set(actual)):
        p, a = predicted.get(task, {}), actual.get(task, {})
        row = {}
        for key in ("calls", "prompt_tokens", "output_tokens", "cost_usd"):
            if key in p or key in a:
                row[f"predicted_{key}"] = p.get(key, 0)
                row[f"actual_{key}"] = a.get(key, 0)
        out[task] = row
    return out
