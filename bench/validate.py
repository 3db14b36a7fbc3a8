"""Validate speed: the page-image check of `longdocvqa validate` against decoding every image in full, same rows.

Usage: python bench/validate.py [RUN_OR_DATASET]   (default: builds recipes/demo.yaml into a temporary folder)

`validate` decodes every page image of the `sft` config, because a JPEG cut short still has a whole header. It
decodes each distinct image once (a document's pages recur in each of its rows) and JPEGs at 1/8 scale (every
byte is still entropy-decoded). Prints CPU seconds (one core, `time.process_time`) of:
- the baseline: Pillow `Image.open(...).load()` on every image of every row, as `validate` did before;
- the project's check (`validate._decoded_sizes` with its memo), which must give the same sizes;
- the whole `validate_dataset` call, for scale.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from longdocvqa.hub import validate

ROOT = Path(__file__).resolve().parents[1]


def sft_images(dataset: Path) -> list[list[dict]]:
    paths = sorted((dataset / "data" / "sft").glob("*.parquet"))
    return [row for path in paths for row in pq.read_table(path, columns=["images"]).column("images").to_pylist()]


def full_decode(rows: list[list[dict]]) -> list[tuple[int, int]]:
    sizes = []
    for row in rows:
        for image in row:
            with Image.open(io.BytesIO(image["bytes"])) as img:
                img.load()
                sizes.append(img.size)
    return sizes


def project_check(rows: list[list[dict]]) -> list[tuple[int, int]]:
    report = validate.ValidationReport(target="bench")
    known: dict[bytes, tuple[int, int]] = {}
    sizes = []
    for row in rows:
        found = validate._decoded_sizes(report, row, {"config": "sft"}, known)
        assert found is not None, report.to_json()
        sizes += found
    return sizes


def cpu(fn, *args) -> tuple[float, object]:
    start = time.process_time()
    result = fn(*args)
    return time.process_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="a build folder or its dataset/ (default: the demo)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            from longdocvqa.core.recipe import load_recipe
            from longdocvqa.pipeline import build

            run = Path(tmp) / "demo"
            build(load_recipe(ROOT / "recipes" / "demo.yaml"), run, workers=1)
        dataset = run / "dataset" if (run / "dataset").is_dir() else run
        rows = sft_images(dataset)
        images = sum(map(len, rows))
        distinct = len({image["bytes"] for row in rows for image in row})
        base_s, base = cpu(full_decode, rows)
        ours_s, ours = cpu(project_check, rows)
        assert ours == base, "the project's check gives other sizes than a full decode"
        whole_s, report = cpu(validate.validate_dataset, str(dataset))
    print(f"{len(rows)} sft rows, {images} page images ({distinct} distinct), one core (CPU time):")
    print(f"  full decode of every image (baseline): {base_s:6.2f} s")
    print(f"  validate's image check:                {ours_s:6.2f} s = {base_s / ours_s:.1f}x faster")
    print(f"  whole validate_dataset:                {whole_s:6.2f} s, ok={report.ok}")  # type: ignore[attr-defined]
    sys.exit(0 if report.ok else 1)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
