"""Reading a published dataset the way a user would: a local folder or a Hub repo, through `datasets.load_dataset`.

`validate` and the tests use these functions, so they check exactly what a user gets. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longdocvqa.core.contract import ordered_splits
from longdocvqa.core.errors import ExternalServiceError, RecipeError
from longdocvqa.core.recipe import ShortDataConfig

if TYPE_CHECKING:
    from datasets import Dataset

_NETWORK_ERRORS = {"TransportError", "ConnectionError", "TimeoutException", "ConnectTimeout", "ReadTimeout"}


def network_failure(exc: BaseException) -> BaseException | None:
    """The connection error (refused, reset, DNS, timeout) behind `exc`, following its causes; None if none."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if any(cls.__name__ in _NETWORK_ERRORS for cls in type(seen).__mro__):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def unreachable(repo: str, exc: BaseException) -> ExternalServiceError | None:
    """A one-line ExternalServiceError when `exc` means the Hub could not be reached, else None."""
    from huggingface_hub import constants

    cause = network_failure(exc)
    if cause is None:
        return None
    detail = " ".join(str(cause).split())[:200] or type(cause).__name__
    return ExternalServiceError(f"{repo}: cannot reach the Hub at {constants.ENDPOINT}: {detail}")


def check_reachable(repo: str, revision: str | None = None, token: str | None = None) -> None:
    """Ask the Hub about `repo` once; raise a one-line ExternalServiceError when the Hub cannot be reached.

    Any answer, "not found" included, means the Hub is there: the loaders then report what they find."""
    from huggingface_hub import HfApi

    try:
        HfApi(token=token).repo_info(repo, repo_type="dataset", revision=revision)
    except Exception as exc:  # only a network failure is raised here; the Hub's own answers are validate's findings
        error = unreachable(repo, exc)
        if error is not None:
            raise error from None


def is_local(path_or_repo: str | Path) -> bool:
    """True when the argument names an existing folder (otherwise it is a Hub repo id)."""
    return Path(path_or_repo).is_dir()


def read_card_text(path_or_repo: str | Path, revision: str | None = None, token: str | None = None) -> str:
    """The README.md of a folder, or of a Hub dataset repo at `revision`."""
    if is_local(path_or_repo):
        return (Path(path_or_repo) / "README.md").read_text(encoding="utf-8")
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(str(path_or_repo), "README.md", repo_type="dataset", revision=revision, token=token)
    return Path(path).read_text(encoding="utf-8")


def load_config(
    path_or_repo: str | Path,
    config: str,
    *,
    revision: str | None = None,
    split: str | None = None,
    streaming: bool = False,
    decode_images: bool = True,
    verify: bool = True,
    cache_dir: str | Path | None = None,
    token: str | None = None,
) -> Any:
    """`datasets.load_dataset(path_or_repo, config, revision=...)`; `decode_images=False` leaves page images and the
    embedded PDFs as bytes.

    `verify=False` skips `datasets`' own split-size check, so that `validate` can report count mismatches itself.
    """
    from datasets import load_dataset

    kwargs: dict[str, Any] = {"split": split, "streaming": streaming, "token": token}
    kwargs["verification_mode"] = "basic_checks" if verify else "no_checks"
    if not is_local(path_or_repo):
        kwargs["revision"] = revision
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    data = load_dataset(str(path_or_repo), config, **kwargs)
    return data if decode_images else _raw_media(data, config)


def _raw_media(data: Any, config: str) -> Any:
    """`data` with its page images (`sft`) or embedded PDFs (`documents`) left undecoded: bytes and file name."""
    from datasets import Image, List, Pdf

    if config == "sft":
        return data.cast_column("images", List(Image(decode=False)))
    if config == "documents":
        parts = data.values() if hasattr(data, "values") else [data]
        if all("pdf" in (part.features or {}) for part in parts):  # datasets published before the column have none
            return data.cast_column("pdf", Pdf(decode=False))
    return data


def iter_rows(
    path_or_repo: str | Path,
    config: str,
    *,
    revision: str | None = None,
    decode_images: bool = False,
    token: str | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Stream every row of a config as (split, row), train first; memory stays bounded (streaming=True)."""
    splits = load_config(
        path_or_repo, config, revision=revision, streaming=True, decode_images=decode_images, verify=False, token=token
    )
    for split in ordered_splits(splits):
        for row in splits[split]:
            yield split, row


def load_short_rows(config: ShortDataConfig) -> Dataset:
    """The short-context source (local folder or Hub dataset) with image columns left undecoded (bytes)."""
    from datasets import Image, List, load_dataset

    source = config.path or config.repo
    if not source:
        raise RecipeError("assemble.short_data: set `path` (local dataset folder) or `repo` (Hub dataset id)")
    try:
        data = load_dataset(source, config.config, split=config.split)
    except Exception as exc:  # datasets raises many types for a missing or malformed source
        raise RecipeError(f"assemble.short_data: cannot load {source!r}: {exc}") from None
    if "images" in data.column_names:
        data = data.cast_column("images", List(Image(decode=False)))
    if "image" in data.column_names:
        data = data.cast_column("image", Image(decode=False))
    return data


def short_row_images(row: Mapping[str, Any]) -> list[bytes]:
    """Encoded images of one short-data row (`images` list or a single `image`)."""
    images = row.get("images") or ([row["image"]] if row.get("image") is not None else [])
    out = []
    for image in images:
        if isinstance(image, dict) and image.get("bytes"):
            out.append(image["bytes"])
        elif isinstance(image, dict) and image.get("path"):
            out.append(Path(image["path"]).read_bytes())
    return out


def fetch_tokenizer_json(model: str) -> Path | None:
    """The model repo's tokenizer.json downloaded into the Hugging Face cache, or None when offline or unreachable.

    Used by the assemble stage after the offline sources (tokens.resolve_tokenizer); honours HF_HUB_OFFLINE and
    HF_ENDPOINT like every `huggingface_hub` download. The token, if any, comes from HF_TOKEN or `hf auth login`.
    """
    from huggingface_hub import constants, hf_hub_download

    if constants.HF_HUB_OFFLINE or "/" not in model:
        return None
    try:
        return Path(hf_hub_download(model, "tokenizer.json", etag_timeout=10))
    except Exception:  # no network, unknown repo, gated model: the caller names the offline fix
        return None
