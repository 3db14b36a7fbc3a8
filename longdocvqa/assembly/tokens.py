"""Exact Qwen2.5-VL sequence lengths, from page sizes and text, without pixels or a model.

Owns: the pixel size PyMuPDF gives a page at a DPI, Qwen2-VL's `smart_resize` and image-token formula, loading the
Qwen2 tokenizer (Hub cache, offline from the `qwen.tiktoken` file that the PyPI package `dashscope` ships, converted
with `tokenizers` alone, or a Hub download the caller passes in), and
counting the tokens of a TRL conversation rendered with Qwen2.5-VL's chat template. The count equals
`len(input_ids)` from `Qwen2_5_VLProcessor(text=apply_chat_template(messages), images=pages)` (tests check it).
Does not own: building examples (assemble.py) or rendering pages (documents/render.py).

Licences: the Qwen2/2.5 BPE vocabulary is released with the Qwen2.5(-VL) models under Apache-2.0; `dashscope` 2.0.2,
whose `dashscope/resources/qwen.tiktoken` we convert, is Apache-2.0. Nothing of it is shipped with this package: the
file is read from the user's own installation and the converted `tokenizer.json` is cached on their machine.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from longdocvqa.core.errors import StageError

# One LLM token per 28x28 pixels: 14x14 ViT patches merged 2x2 (Qwen2.5-VL's "pixel unshuffle").
PATCH_PX = 14
MERGE = 2
FACTOR_PX = PATCH_PX * MERGE
MAX_ASPECT_RATIO = 200
HUB_MIN_PIXELS = 3136  # Qwen2.5-VL preprocessor_config.json: 56*56
HUB_MAX_PIXELS = 12845056  # 16384*28*28
RENDER_MAX_PIXELS = HUB_MAX_PIXELS  # recipe render.max_pixels default: no page image larger than the model takes
_MUPDF_EPSILON = 0.001  # MuPDF's fz_round_rect: floorf(x0 + eps), ceilf(x1 - eps), in single precision

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VISION_MARKERS = 2  # <|vision_start|> and <|vision_end|> around each image's pad tokens
QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Qwen2.5's 22 added tokens, ids 151643..151664 in this order (the first 14 are special).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
EXTRA_ADDED_TOKENS = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip
ADDED_TOKENS = SPECIAL_TOKENS + EXTRA_ADDED_TOKENS
_ADDED_RE = re.compile("|".join(re.escape(t) for t in sorted(ADDED_TOKENS, key=len, reverse=True)))
DASHSCOPE_FIX = "pip install --no-deps dashscope==2.0.2"
_TIKTOKEN_RELPATH = ("resources", "qwen.tiktoken")
_RUN_CACHE_MAX_CHARS = 48  # cache counts of short recurring text runs (page labels, role headers)
_RUN_CACHE_MAX_ENTRIES = 200_000


# ---------------------------------------------------------------------------------------------- image tokens


def pixmap_size_px(width_pt: float, height_pt: float, dpi: int) -> tuple[int, int]:
    """(width, height) in pixels of `page.get_pixmap(dpi=dpi)` for a page of this size (page.rect, in points).

    MuPDF scales the page rectangle by dpi/72 in single precision and rounds it with fz_round_rect.
    """
    import numpy as np  # float32 arithmetic, as MuPDF's C code does it

    zoom = np.float32(dpi / 72)
    sides = np.array([width_pt, height_pt], dtype=np.float32) * zoom
    width_px, height_px = np.ceil(sides - np.float32(_MUPDF_EPSILON)).astype(np.int64).tolist()
    return int(width_px), int(height_px)


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR_PX,
    min_pixels: int = HUB_MIN_PIXELS,
    max_pixels: int = HUB_MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen2-VL's resize target (height, width): multiples of `factor` with min_pixels <= area <= max_pixels.

    The same arithmetic as transformers' `qwen2_vl.image_processing_qwen2_vl.smart_resize` (banker's `round`).
    """
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, got {height}x{width}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@lru_cache(maxsize=65536)
def image_tokens(width_px: int, height_px: int, min_pixels: int, max_pixels: int) -> int:
    """`<|image_pad|>` tokens of one image: (h'/28)(w'/28) after smart_resize (vision start/end not included)."""
    h_bar, w_bar = smart_resize(height_px, width_px, FACTOR_PX, min_pixels, max_pixels)
    return (h_bar // FACTOR_PX) * (w_bar // FACTOR_PX)


def capped_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int = RENDER_MAX_PIXELS) -> int:
    """The DPI a page is rendered at: `dpi`, or the highest lower whole DPI whose pixmap has <= max_pixels pixels.

    Rendering (documents/render.py) and counting (here) both use it, so a huge page (a 14,000 pt poster) is never
    rasterised at full DPI (MuPDF refuses: "Overly large image") and its counted tokens stay exact.
    """
    width_px, height_px = pixmap_size_px(width_pt, height_pt, dpi)
    if width_px * height_px <= max_pixels:
        return dpi
    lower = max(1, min(dpi - 1, math.floor(dpi * math.sqrt(max_pixels / (width_px * height_px)))))
    while lower > 1 and math.prod(pixmap_size_px(width_pt, height_pt, lower)) > max_pixels:
        lower -= 1
    return lower


@lru_cache(maxsize=65536)
def page_image_tokens(
    width_pt: float, height_pt: float, dpi: int, min_pixels: int, max_pixels: int,
    render_max_pixels: int = RENDER_MAX_PIXELS,
) -> int:  # fmt: skip
    """Tokens one rendered page adds to a sequence: its image tokens plus <|vision_start|> and <|vision_end|>.

    The page is rendered at `capped_dpi(..., render_max_pixels)`, as documents/render.py does."""
    width_px, height_px = pixmap_size_px(width_pt, height_pt, capped_dpi(width_pt, height_pt, dpi, render_max_pixels))
    return image_tokens(width_px, height_px, min_pixels, max_pixels) + VISION_MARKERS


def document_image_tokens(
    page_sizes_pt: Sequence[tuple[float, float]], dpi: int, min_pixels: int, max_pixels: int
) -> int:
    """Image tokens (with vision markers) of every page of a document rendered at `dpi`."""
    return sum(page_image_tokens(w, h, dpi, min_pixels, max_pixels) for w, h in page_sizes_pt)


def image_size_px(image: Any) -> tuple[int, int]:
    """(width, height) of a PIL image, a datasets Image dict ({"bytes"|"path"}), or a (width, height) pair.

    Encoded images are opened lazily: Pillow reads the header only, never the pixels.
    """
    if hasattr(image, "size") and not isinstance(image, Mapping | Sequence):
        width, height = image.size
        return int(width), int(height)
    if isinstance(image, Mapping):
        from PIL import Image

        if not image.get("bytes") and not image.get("path"):
            raise ValueError("image dict has neither bytes nor path")
        with Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]) as img:
            return img.size
    if isinstance(image, Sequence) and len(image) == 2:
        return int(image[0]), int(image[1])
    raise ValueError(f"cannot tell the size of an image of type {type(image).__name__}")


def decoded_size_px(image: Any) -> tuple[int, int]:
    """(width, height) of a datasets Image dict ({"bytes"|"path"}) after decoding all its data, not just the header
    (a JPEG cut short has a whole header): ValueError naming the cause when it does not decode."""
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # another library's global would let a cut-short JPEG decode as grey
        raise ValueError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated images cannot be detected")
    try:
        source = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
        with Image.open(source) as img:
            size = img.size
            if img.format == "JPEG":  # at 1/8 scale (DCT scaling): every byte is still decoded, in a third of the time
                img.draft(img.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
            return size
    except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error, DecompressionBombError...
        raise ValueError(f"image does not decode: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------- tokenizer


def cache_dir() -> Path:
    """Where converted tokenizers are cached: $LONGDOCVQA_CACHE, else ~/.cache/longdocvqa."""
    return Path(os.environ.get("LONGDOCVQA_CACHE") or Path.home() / ".cache" / "longdocvqa")


def load_tokenizer(
    name: str = "Qwen/Qwen2.5-VL-7B-Instruct",
    cache: str | Path | None = None,
    fetch: Callable[[str], Path | None] | None = None,
) -> Any:
    """The Qwen2 tokenizer as a `tokenizers.Tokenizer` (see `resolve_tokenizer`)."""
    return resolve_tokenizer(name, cache, fetch)[0]


def resolve_tokenizer(
    name: str = "Qwen/Qwen2.5-VL-7B-Instruct",
    cache: str | Path | None = None,
    fetch: Callable[[str], Path | None] | None = None,
) -> tuple[Any, str]:
    """(tokenizer, where it came from), with no dependency beyond `tokenizers`.

    Tried in order: `name` as a local folder with tokenizer.json; `name` as a Hub model id already in the local
    Hugging Face cache; the `qwen.tiktoken` vocabulary shipped by the PyPI package dashscope, converted once and
    cached (identical ids to the official tokenizer); `fetch(name)`, a download of the model's tokenizer.json from
    the Hub when online (the pipeline passes one; this module stays offline).
    """
    from tokenizers import Tokenizer

    folder = Path(name)
    if (folder / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(folder / "tokenizer.json")), "local folder"
    cached = _tokenizer_from_hub_cache(name)
    if cached is not None:
        return cached, "huggingface cache"
    if dashscope_tiktoken_path() is not None or fetch is None:
        return _tokenizer_from_dashscope(name, Path(cache) if cache else cache_dir()), "dashscope qwen.tiktoken"
    downloaded = fetch(name)
    if downloaded is None:
        raise StageError(
            f"no Qwen2 tokenizer for {name!r}: not a local folder, not in the Hugging Face cache, the Hub could not "
            f"be reached (or HF_HUB_OFFLINE is set), and the offline vocabulary is not installed; fix: {DASHSCOPE_FIX}"
        )
    return Tokenizer.from_file(str(downloaded)), "huggingface hub"


def _hub_cache_roots() -> list[Path]:
    """Where the Hugging Face cache may be (HF_HUB_CACHE, HF_HOME/hub, the default)."""
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HF_HOME") and str(Path(os.environ["HF_HOME"]) / "hub")]
    return [Path(r) for r in roots if r] + [Path.home() / ".cache" / "huggingface" / "hub"]


def _tokenizer_from_hub_cache(name: str) -> Any | None:
    """tokenizer.json of `name` from the Hugging Face cache's documented layout (refs/main -> snapshots/<commit>)."""
    from tokenizers import Tokenizer

    if "/" not in name or Path(name).exists():
        return None
    for root in _hub_cache_roots():
        repo = root / ("models--" + name.replace("/", "--"))
        ref = repo / "refs" / "main"
        snapshots = [ref.read_text().strip()] if ref.is_file() else []
        snapshots += sorted(p.name for p in (repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
        for commit in snapshots:
            path = repo / "snapshots" / commit / "tokenizer.json"
            if path.is_file():
                return Tokenizer.from_file(str(path))
    return None


def dashscope_tiktoken_path() -> Path | None:
    """Path of `qwen.tiktoken` inside an installed dashscope package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*_TIKTOKEN_RELPATH)
    return path if path.is_file() else None


_CONVERTED: dict[str, Any] = {}  # converted file -> its Tokenizer, loaded once per process (encoding never mutates it)


def _tokenizer_from_dashscope(name: str, cache: Path) -> Any:
    from tokenizers import Tokenizer

    vocab = dashscope_tiktoken_path()
    if vocab is None:
        raise StageError(
            f"no Qwen2 tokenizer available offline: {name!r} is neither a local folder nor in the Hugging Face cache, "
            f"and the dashscope package (which ships qwen.tiktoken) is not installed; fix: {DASHSCOPE_FIX}"
        )
    digest = hashlib.md5(vocab.read_bytes()).hexdigest()[:12]
    target = cache / f"qwen2-tokenizer-v1-{digest}.json"  # bump v1 when the conversion changes
    if not target.is_file():
        tokenizer = convert_tiktoken(vocab)
        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        tokenizer.save(str(partial))
        os.replace(partial, target)
    key = str(target)
    if key not in _CONVERTED:  # parsing the 150K-entry file costs ~0.5 s; plan and assemble both need it
        _CONVERTED[key] = Tokenizer.from_file(key)
    return _CONVERTED[key]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def tiktoken_vocab_merges(ranks: Mapping[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocab and merges from tiktoken ranks: a token's merges are its splits into two tokens, in rank
    order (the same derivation as transformers' TikTokenConverter, without transformers)."""
    encoder = bytes_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(encoder[b] for b in token)

    vocab, merges = {}, []
    for token, rank in ranks.items():
        vocab[as_text(token)] = rank
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        merges += sorted(((left, right, rank) for left, right in splits), key=lambda m: (ranks[m[0]], ranks[m[1]]))
    merges.sort(key=lambda m: m[2])
    return vocab, [(as_text(left), as_text(right)) for left, right, _ in merges]


def convert_tiktoken(vocab_path: str | Path) -> Any:
    """Convert Qwen's `qwen.tiktoken` (base64 token, rank per line) into a `tokenizers.Tokenizer` (a few seconds).

    Qwen2 split regex, NFC normalisation, byte-level BPE, and the 22 added tokens at ids 151643..151664.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    lines = Path(vocab_path).read_bytes().splitlines()
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in lines if line)}
    vocab, merges = tiktoken_vocab_merges(ranks)
    tokenizer = Tokenizer(BPE(vocab, merges, fuse_unk=False))
    tokenizer.model.ignore_merges = True
    split = pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                        use_regex=False)])  # fmt: skip
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in EXTRA_ADDED_TOKENS])
    return tokenizer


# ---------------------------------------------------------------------------------------------- chat template


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text TRL's `qwen2_5_vl.jinja` renders (add_generation_prompt off), one placeholder per image."""
    return "".join(text for _, text in _chat_pieces(messages))


def _chat_pieces(messages: Sequence[Mapping[str, Any]]) -> Iterable[tuple[bool, str]]:
    """(is_added_token, text) pieces of the rendered template, mirroring qwen2_5_vl.jinja branch by branch."""
    for index, message in enumerate(messages):
        if index == 0 and message["role"] != "system":
            yield from ((True, "<|im_start|>"), (False, f"system\n{DEFAULT_SYSTEM_PROMPT}"), (True, "<|im_end|>"))
            yield False, "\n"
        yield True, "<|im_start|>"
        yield False, f"{message['role']}\n"
        content = message["content"]
        if isinstance(content, str):
            yield False, content
        else:
            for part in content:
                yield from _part_pieces(part)
        yield True, "<|im_end|>"
        yield False, "\n"


def _part_pieces(part: Mapping[str, Any]) -> Iterable[tuple[bool, str]]:
    if part.get("type") == "image" or "image" in part or "image_url" in part:
        yield from ((True, "<|vision_start|>"), (True, "<|image_pad|>"), (True, "<|vision_end|>"))
    elif part.get("type") == "video" or "video" in part:
        raise ValueError("video parts are not supported")
    elif "text" in part:
        yield False, "None" if part["text"] is None else str(part["text"])  # Jinja renders None as "None"


def count_images(messages: Sequence[Mapping[str, Any]]) -> int:
    """Image placeholders in a conversation (what the template renders as images)."""
    return sum(1 for added, text in _chat_pieces(messages) if added and text == "<|image_pad|>")


class TokenCounter:
    """Exact Qwen2.5-VL lengths: text through the Qwen2 tokenizer, images through smart_resize.

    Counting splits the rendered template at added tokens, exactly as the tokenizer does, and tokenises the text
    runs between them in batches; short recurring runs (page labels, role headers) are cached.
    """

    def __init__(
        self, tokenizer: Any, min_pixels: int = HUB_MIN_PIXELS, max_pixels: int = HUB_MAX_PIXELS,
        render_max_pixels: int = RENDER_MAX_PIXELS,
    ) -> None:  # fmt: skip
        self.tokenizer = tokenizer
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.render_max_pixels = render_max_pixels  # recipe render.max_pixels: the pixel cap of page rendering
        self._run_tokens: dict[str, int] = {}
        self._page_tables: dict[int, dict[tuple[float, float], int]] = {}
        self.source = "given"  # where the tokenizer came from (recorded in OUT/runs.jsonl)

    @classmethod
    def load(
        cls, tokenizer: str = "Qwen/Qwen2.5-VL-7B-Instruct", min_pixels: int = HUB_MIN_PIXELS,
        max_pixels: int = HUB_MAX_PIXELS, cache: str | Path | None = None,
        fetch: Callable[[str], Path | None] | None = None,
        render_max_pixels: int = RENDER_MAX_PIXELS,
    ) -> TokenCounter:  # fmt: skip
        """A counter for AssembleConfig's tokenizer, min_pixels and max_pixels (see `resolve_tokenizer`)."""
        loaded, source = resolve_tokenizer(tokenizer, cache, fetch)
        counter = cls(loaded, min_pixels, max_pixels, render_max_pixels)
        counter.source = source
        return counter

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each plain text (no template, no special tokens added), encoded in one batch."""
        if not texts:
            return []
        return [len(enc.ids) for enc in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]

    def image_tokens(self, width_px: int, height_px: int) -> int:
        """Tokens of one image of this pixel size, vision start/end markers included."""
        return image_tokens(width_px, height_px, self.min_pixels, self.max_pixels) + VISION_MARKERS

    def images_tokens(self, images: Sequence[Any]) -> int:
        """Tokens of a list of images (PIL images, datasets Image dicts or (width, height) pairs), markers included."""
        return sum(self.image_tokens(*image_size_px(image)) for image in images)

    def page_tokens(self, page_sizes_pt: Sequence[tuple[float, float]], dpi: int) -> int:
        """Tokens of a document's pages rendered at `dpi`, vision markers included (a dict per DPI caches sizes)."""
        table = self._page_tables.setdefault(dpi, {})
        total = 0
        for width, height in page_sizes_pt:
            count = table.get((width, height))
            if count is None:
                count = page_image_tokens(width, height, dpi, self.min_pixels, self.max_pixels, self.render_max_pixels)
                table[(width, height)] = count
            total += count
        return total

    def count_chats(
        self, chats: Sequence[Sequence[Mapping[str, Any]]], image_tokens: Sequence[int]
    ) -> list[int]:  # fmt: skip
        """Exact `len(input_ids)` of each conversation, given the total tokens of its images (`image_tokens` /
        `page_tokens`, vision markers included). Text runs of all chats are tokenised in one batch."""
        structures = [self._runs(chat) for chat in chats]
        counts = self._count_runs([run for _, runs, _ in structures for run in runs])
        totals = []
        for (added, runs, images), pixels in zip(structures, image_tokens, strict=True):
            # each image renders as 3 added tokens; its <|image_pad|> is replaced by the image's tokens
            totals.append(added - 3 * images + sum(counts[run] for run in runs) + pixels)
        return totals

    def count_runs(self, run_lists: Sequence[Sequence[str]]) -> list[int]:
        """Tokens of text runs that sit between added tokens (so tokenise independently), summed per list."""
        counts = self._count_runs([run for runs in run_lists for run in runs])
        return [sum(counts[run] for run in runs) for runs in run_lists]

    def _runs(self, chat: Sequence[Mapping[str, Any]]) -> tuple[int, list[str], int]:
        """(added tokens, text runs between added tokens, images) of a rendered conversation."""
        added, images = 0, 0
        runs: list[str] = []
        current: list[str] = []
        for is_added, text in _chat_pieces(chat):
            if is_added:
                added += 1
                images += text == "<|image_pad|>"
                if current:
                    runs.append("".join(current))
                    current = []
            else:
                current.append(text)
        if current:
            runs.append("".join(current))
        return added, runs, images

    def _count_runs(self, runs: list[str]) -> dict[str, int]:
        """Token counts of text runs: cached ones looked up, the rest tokenised in one batch. A run containing
        added-token strings (a question quoting "<|im_end|>") is split at them first, as the tokenizer does."""
        if len(self._run_tokens) > _RUN_CACHE_MAX_ENTRIES:
            self._run_tokens.clear()
        unique = set(runs)
        known = {run: self._run_tokens[run] for run in unique if run in self._run_tokens}
        todo = sorted(unique - known.keys())
        pieces = {run: [p for p in _ADDED_RE.split(run) if p] for run in todo}
        counts = iter(self.count_texts([p for run in todo for p in pieces[run]]))
        for run in todo:
            known[run] = sum(next(counts) for _ in pieces[run]) + len(_ADDED_RE.findall(run))
            if len(run) <= _RUN_CACHE_MAX_CHARS:
                self._run_tokens[run] = known[run]
        return known
