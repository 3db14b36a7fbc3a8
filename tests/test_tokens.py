"""tokens.py against the real thing: PyMuPDF's pixmap sizes, transformers' smart_resize, the official Qwen2.5 token
ids, TRL's qwen2_5_vl.jinja, and `len(input_ids)` from a real Qwen2_5_VLProcessor on rendered pages."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from longdocvqa.assembly import tokens
from longdocvqa.assembly.assemble import example_lengths, example_messages, example_texts
from longdocvqa.core.errors import StageError
from longdocvqa.core.recipe import AssembleConfig
from longdocvqa.core.records import QARecord

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT / "tests" / "data" / "pdfs"
LOW_MAX_PIXELS = 1280 * 28 * 28
# (width, height) in points: A4 as TeX writes it, A4 rounded, a Beamer slide, US-Letter landscape by rotation.
PAGE_SHAPES = [(595.276, 841.89), (595.0, 842.0), (362.835, 272.126)]


def trl_template() -> str:
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5_vl.jinja").read_text()


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> tokens.TokenCounter:
    if tokens.dashscope_tiktoken_path() is None:
        pytest.skip(f"no offline Qwen2 vocabulary: {tokens.DASHSCOPE_FIX}")
    return tokens.TokenCounter.load(cache=tmp_path_factory.mktemp("tokcache"))


# ---------------------------------------------------------------------------------------------- page pixels


def test_letter_at_144_dpi_is_1224_by_1584() -> None:
    assert tokens.pixmap_size_px(612, 792, 144) == (1224, 1584)
    # 44 x 57 grid after smart_resize, plus vision start/end
    assert tokens.page_image_tokens(612, 792, 144, tokens.HUB_MIN_PIXELS, tokens.HUB_MAX_PIXELS) == 44 * 57 + 2


def test_pixmap_size_matches_pymupdf_on_odd_sizes() -> None:
    import pymupdf

    rng = random.Random(7)
    doc = pymupdf.open()
    shapes = PAGE_SHAPES + [(rng.uniform(72, 1500), rng.uniform(72, 1500)) for _ in range(40)]
    shapes += [(100 + k * 0.36, 200 + k / 1.44) for k in range(40)]  # sides whose pixel size lands near .0 and .5
    for width, height in shapes:
        page = doc.new_page(width=round(width, 3), height=round(height, 3))
        for dpi in (72, 144, 150, 200):
            pix = page.get_pixmap(dpi=dpi)
            assert tokens.pixmap_size_px(page.rect.width, page.rect.height, dpi) == (pix.width, pix.height), (
                width, height, dpi,
            )  # fmt: skip


def test_pixmap_size_matches_pymupdf_on_real_pages() -> None:
    import pymupdf

    for path in sorted(PDFS.glob("*.pdf")):
        with pymupdf.open(path) as doc:
            page = doc[0]
            rotated = doc[1]
            rotated.set_rotation(90)
            for p in (page, rotated):
                pix = p.get_pixmap(dpi=144)
                assert tokens.pixmap_size_px(p.rect.width, p.rect.height, 144) == (pix.width, pix.height)


def test_smart_resize_matches_transformers() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    rng = random.Random(3)
    sizes = [(rng.randint(28, 6000), rng.randint(28, 6000)) for _ in range(2000)] + [(10, 10), (14, 42), (1684, 1191)]
    for height, width in sizes:
        for min_pixels, max_pixels in ((tokens.HUB_MIN_PIXELS, tokens.HUB_MAX_PIXELS), (3136, LOW_MAX_PIXELS)):
            assert tokens.smart_resize(height, width, 28, min_pixels, max_pixels) == smart_resize(
                height, width, 28, min_pixels, max_pixels
            )
    with pytest.raises(ValueError, match="aspect ratio"):
        tokens.smart_resize(28, 28 * 201)


def test_image_tokens_known_values() -> None:
    # docs/research/training.md §d: A4 and Letter at 150 dpi under both max_pixels settings
    assert tokens.image_tokens(1240, 1754, tokens.HUB_MIN_PIXELS, tokens.HUB_MAX_PIXELS) == 2772
    assert tokens.image_tokens(1240, 1754, tokens.HUB_MIN_PIXELS, LOW_MAX_PIXELS) == 1260
    assert tokens.image_tokens(1275, 1650, tokens.HUB_MIN_PIXELS, LOW_MAX_PIXELS) == 1240


def test_image_size_from_pil_bytes_path_and_pair(tmp_path: Path) -> None:
    from PIL import Image

    image = Image.new("RGB", (321, 123))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    image.save(tmp_path / "x.png")
    assert tokens.image_size_px(image) == (321, 123)
    assert tokens.image_size_px({"bytes": buffer.getvalue(), "path": None}) == (321, 123)
    assert tokens.image_size_px({"bytes": None, "path": str(tmp_path / "x.png")}) == (321, 123)
    assert tokens.image_size_px((321, 123)) == (321, 123)


# ---------------------------------------------------------------------------------------------- tokenizer


def test_converted_tokenizer_gives_official_ids(counter: tokens.TokenCounter) -> None:
    text = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n"
    )
    expected = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 151652, 151655,
                151653, 3838, 374, 419, 30, 151645, 198]  # fmt: skip
    assert counter.tokenizer.encode(text, add_special_tokens=False).ids == expected
    assert counter.tokenizer.encode("Describe this image.", add_special_tokens=False).ids == [74785, 419, 2168, 13]
    ids = [counter.tokenizer.token_to_id(t) for t in tokens.ADDED_TOKENS]
    assert ids == list(range(151643, 151665))


def test_converted_tokenizer_is_cached(counter: tokens.TokenCounter, tmp_path: Path) -> None:
    first = tokens.load_tokenizer("not-a-model", cache=tmp_path)
    cached = list(tmp_path.glob("qwen2-tokenizer-*.json"))
    assert len(cached) == 1
    again = tokens.load_tokenizer("not-a-model", cache=tmp_path)
    text = "Ünïcödé café — 数学公式 ∑ αβγ\n\n  tabs\tand   spaces <tool_call> 12345"
    assert first.encode(text).ids == again.encode(text).ids == counter.tokenizer.encode(text).ids


def test_missing_vocabulary_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tokens, "dashscope_tiktoken_path", lambda: None)
    with pytest.raises(StageError, match=r"pip install --no-deps dashscope==2\.0\.2"):
        tokens.load_tokenizer("nobody/not-cached-anywhere", cache=tmp_path)


# ---------------------------------------------------------------------------------------------- template


def test_conversion_needs_only_tokenizers_and_equals_transformers_converter(counter: tokens.TokenCounter) -> None:
    """The base install has no transformers: our tiktoken conversion must give the very tokenizer it would."""
    import base64

    converters = pytest.importorskip("transformers.convert_slow_tokenizer")
    from tokenizers import AddedToken, normalizers

    class Reference(converters.TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(path: str) -> dict[bytes, int]:
            lines = Path(path).read_bytes().splitlines()
            return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in lines if line)}

    vocab = tokens.dashscope_tiktoken_path()
    reference = Reference(vocab_file=str(vocab), pattern=tokens.QWEN2_SPLIT_PATTERN, extra_special_tokens=[])
    expected = reference.converted()
    expected.normalizer = normalizers.NFC()
    expected.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens.SPECIAL_TOKENS])
    expected.add_tokens([AddedToken(t, special=False, normalized=False) for t in tokens.EXTRA_ADDED_TOKENS])
    assert tokens.convert_tiktoken(vocab).to_str() == expected.to_str()


def test_tokenizer_sources_in_order(counter: tokens.TokenCounter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    saved = tmp_path / "tokenizer.json"
    counter.tokenizer.save(str(saved))
    snapshot = tmp_path / "hub" / "models--org--tok" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    (snapshot / "tokenizer.json").write_bytes(saved.read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert tokens.resolve_tokenizer(str(tmp_path))[1] == "local folder"
    assert tokens.resolve_tokenizer("org/tok")[1] == "huggingface cache"  # no transformers needed
    assert (
        tokens.resolve_tokenizer("org/other", tmp_path / "c", fetch=lambda name: None)[1] == "dashscope qwen.tiktoken"
    )
    monkeypatch.setattr(tokens, "dashscope_tiktoken_path", lambda: None)
    fetched, source = tokens.resolve_tokenizer("org/other", fetch=lambda name: saved)
    assert source == "huggingface hub" and fetched.encode("Hello").ids == counter.tokenizer.encode("Hello").ids
    with pytest.raises(StageError, match=r"Hub could not be reached .* pip install --no-deps dashscope"):
        tokens.resolve_tokenizer("org/other", fetch=lambda name: None)


def test_render_chat_matches_trl_template() -> None:
    import jinja2

    template = jinja2.Environment().from_string(trl_template())
    chats = [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
         {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "\nWhat?"}]},
         {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}],
        [{"role": "user", "content": [{"type": "text", "text": "Page 1: "}, {"type": "image"},
                                      {"type": "text", "text": None}]}],
    ]  # fmt: skip
    for chat in chats:
        assert tokens.render_chat(chat) == template.render(messages=chat, add_generation_prompt=False)


# ---------------------------------------------------------------------------------------------- processor


def _processor(counter: tokens.TokenCounter, max_pixels: int):
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil

    from train.processor import install_video_processor_shim

    NoVideoProcessor = install_video_processor_shim()  # no torchvision here (docs/research/training.md §2.2)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=counter.tokenizer, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")  # fmt: skip
    images = Qwen2VLImageProcessorPil(min_pixels=tokens.HUB_MIN_PIXELS, max_pixels=max_pixels)
    return Qwen2_5_VLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=NoVideoProcessor(),
                               chat_template=trl_template())  # fmt: skip


def _rendered_pages() -> tuple[list[object], list[tuple[float, float]]]:
    """Real pages at 144 dpi: a Letter page, the same content on A4 / 595x842 / a slide, and a rotated page."""
    import pymupdf
    from PIL import Image

    source = pymupdf.open(PDFS / "R-FAQ.pdf")
    out = pymupdf.open()
    out.insert_pdf(source, from_page=4, to_page=4)
    for width, height in PAGE_SHAPES:
        page = out.new_page(width=width, height=height)
        page.show_pdf_page(page.rect, source, 5)
    out.insert_pdf(source, from_page=6, to_page=6)
    out[-1].set_rotation(90)
    images, sizes = [], []
    for page in out:
        jpeg = page.get_pixmap(dpi=144).tobytes("jpeg")  # encoded and decoded as publish and training do
        images.append(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        sizes.append((page.rect.width, page.rect.height))
    return images, sizes


def _qa(task: str = "extract-multi", answer: str | list[str] = ("12 March 2024", "Página 3")) -> QARecord:
    return QARecord(
        id="qa1", task=task, doc_sha256="d" * 64, segment_id="s", segment_start=1, segment_end=5, segment_sections=[],
        question="Which dates appear on Page 2 and Page 4? Ünïcödé “quotes”, 数学 <|im_end|>", answer=answer,
        answer_format="List" if isinstance(answer, list | tuple) else "String", evidence_pages=[2, 4],
        evidence_sources=["Text"], generator="test", prompt_version="v1",
    )  # fmt: skip


@pytest.mark.parametrize("max_pixels", [tokens.HUB_MAX_PIXELS, LOW_MAX_PIXELS])
def test_count_equals_processor_input_ids(counter: tokens.TokenCounter, max_pixels: int) -> None:
    processor = _processor(counter, max_pixels)
    counter = tokens.TokenCounter(counter.tokenizer, tokens.HUB_MIN_PIXELS, max_pixels)
    images, sizes = _rendered_pages()
    assert [im.size for im in images] == [tokens.pixmap_size_px(w, h, 144) for w, h in sizes]
    configs = [
        AssembleConfig(max_pixels=max_pixels),
        AssembleConfig(max_pixels=max_pixels, page_labels=False, question_position="before", list_format="comma"),
        AssembleConfig(max_pixels=max_pixels, answer_instruction=True, system_prompt="Read every page."),
    ]
    qa = _qa(answer=["12 March 2024", "Página 3"])
    for config in configs:
        messages = example_messages(qa, len(images), config)
        text = processor.apply_chat_template(messages, tokenize=False)
        assert text == tokens.render_chat(messages)
        expected = len(processor(text=[text], images=images, return_tensors="np")["input_ids"][0])
        page_tokens = counter.page_tokens(sizes, 144)
        assert counter.count_chats([messages], [page_tokens]) == [expected]
        item = (*example_texts(qa, len(images), config), len(images), page_tokens)
        assert example_lengths([item], config, counter) == [expected]


def test_count_chats_counts_short_rows_like_processor(counter: tokens.TokenCounter) -> None:
    from PIL import Image

    processor = _processor(counter, LOW_MAX_PIXELS)
    counter = tokens.TokenCounter(counter.tokenizer, tokens.HUB_MIN_PIXELS, LOW_MAX_PIXELS)
    images = [Image.new("RGB", (640, 480), "white"), Image.new("RGB", (50, 3000), "gray")]
    messages = [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "image", "text": None},
                                     {"type": "text", "text": "Compare the two images.\n\n"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The first is wider."}]},
        {"role": "user", "content": [{"type": "text", "text": "And the colours?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "White, then grey."}]},
    ]  # fmt: skip
    text = processor.apply_chat_template(messages, tokenize=False)
    expected = len(processor(text=[text], images=images, return_tensors="np")["input_ids"][0])
    assert counter.count_chats([messages], [counter.images_tokens(images)]) == [expected]
