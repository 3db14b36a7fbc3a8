"""Is the layout output unchanged? sha256 of parse_document's LayoutDoc JSON for every PDF of some folders.

Usage: python bench/layout_identity.py [--compare BEFORE.json] OUT.json [FOLDER ...]
Default folders: tests/data/pdfs, tests/data/layout, tests/data/layout2/pdfs, ../shared/pdfs, tests/data/hostile
(those present). A PDF that open_pdf rejects records its rejection. With --compare, prints how many PDFs are
identical and names those that differ (exit 1 if any). A speed change must leave every hash as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from longdocvqa.core.errors import RejectedInput
from longdocvqa.core.recipe import LayoutConfig
from longdocvqa.documents.parse import parse_document

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("tests/data/pdfs", "tests/data/layout", "tests/data/layout2/pdfs", "../shared/pdfs", "tests/data/hostile")


def hashes(folders: list[Path]) -> dict[str, str]:
    out = {}
    for folder in folders:
        for pdf in sorted(folder.rglob("*.pdf")):
            key = str(pdf.relative_to(ROOT) if pdf.is_relative_to(ROOT) else pdf)
            try:
                doc = parse_document(str(pdf), pdf.name, LayoutConfig())
            except RejectedInput as exc:
                out[key] = f"rejected: {exc.reason}"
                continue
            out[key] = hashlib.sha256(doc.model_dump_json().encode()).hexdigest()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path)
    parser.add_argument("folders", type=Path, nargs="*")
    args = parser.parse_args()
    folders = args.folders or [(ROOT / f).resolve() for f in FOLDERS if (ROOT / f).is_dir()]
    now = hashes(folders)
    args.out.write_text(json.dumps(now, indent=0, sort_keys=True))
    parsed = sum(not v.startswith("rejected") for v in now.values())
    print(f"{len(now)} PDFs ({parsed} parsed) in {', '.join(str(f) for f in folders)}")
    if args.compare:
        before = json.loads(args.compare.read_text())
        differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        print(f"identical: {len(now) - len(differ)} of {len(now)}; differ: {differ or 'none'}")
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
