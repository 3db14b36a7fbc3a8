"""Fetch the second layout truth set (tests/data/layout2/pdfs): outline-bearing PDFs that never guided the heuristics.

How the files were chosen (the rule was fixed before the layout heuristic was run on any of them):
- Five Debian 12 documentation packages not used anywhere in the project before (not in ../shared/pdfs,
  tests/data, tests/HOSTILE_SOURCES.md): texlive-humanities-doc and texlive-science-doc (LaTeX package
  manuals of fields the first set lacks: linguistics, critical editions, chemistry, physics, algorithms),
  pari-doc (PARI/GP manuals, plain TeX), octave-doc (Texinfo) and gnuplot-doc (LaTeX from a doc2tex converter).
- A PDF is eligible when it has an outline of at least 3 entries, 8 to 400 pages, at most 6 MB, and a file
  name used nowhere else in the project.
- Eligible files are ordered by the SHA-256 of "package/path-inside-package" (an order nobody can steer) and
  the first 18 of each package are taken (all of them where a package has fewer). The cap was 12 at first;
  that gave 28 files, so it was raised to 18 to pass 40, still before any layout ran.
Nothing here looks at the layout output. The PDFs are not committed (about 18 MB); tests/data/layout2/SOURCES.tsv
is, with each file's package, version, licence and SHA-256, and this script checks every file against it.

Usage: python scripts/fetch_layout_truth2.py [OUT] [--write-sources]   (default tests/data/layout2/pdfs;
a no-op once complete). Needs network access to Debian's archive (apt-get download) and dpkg-deb.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "tests/data/layout2/SOURCES.tsv"
PACKAGES = {  # package: (version, licence per the package's debian/copyright)
    "texlive-humanities-doc": ("2022.20230122-4", "per package, mostly LPPL-1.3c (see the package's copyright file)"),
    "texlive-science-doc": ("2022.20230122-4", "per package, mostly LPPL-1.3c (see the package's copyright file)"),
    "pari-doc": ("2.15.2-1", "GPL-2+"),
    "octave-doc": ("7.3.0-2", "GPL-3+"),
    "gnuplot-doc": ("5.4.4+dfsg1-2", "gnuplot licence (permissive, see the package's copyright file)"),
}
PER_PACKAGE = 18
MIN_PAGES, MAX_PAGES, MAX_MB, MIN_OUTLINE = 8, 400, 6.0, 3


def used_names() -> set[str]:
    """File names already used by the project (first truth set, shared pool, hostile corpus)."""
    names = {p.name for p in (ROOT / "tests/data").rglob("*.pdf") if "layout2" not in p.parts}
    shared = ROOT.parent / "shared/pdfs"  # the shared pool beside the checkout, when there is one
    names |= {p.name for p in shared.rglob("*.pdf")} if shared.is_dir() else set()
    hostile = ROOT / "tests/data/hostile/SOURCES.tsv"
    if hostile.is_file():
        names |= {line.split("\t")[0].rsplit("/", 1)[-1] for line in hostile.read_text().splitlines()}
    return names


def eligible(path: Path) -> bool:
    import pymupdf

    if path.stat().st_size > MAX_MB * 1e6:
        return False
    try:
        with pymupdf.open(path) as doc:
            return MIN_PAGES <= doc.page_count <= MAX_PAGES and len(doc.get_toc()) >= MIN_OUTLINE
    except Exception:  # a file MuPDF cannot open is simply not eligible
        return False


def choose(package: str, root: Path, used: set[str]) -> list[Path]:
    def key(p: Path) -> str:
        return hashlib.sha256(f"{package}/{p.relative_to(root)}".encode()).hexdigest()

    picked: list[Path] = []
    for pdf in sorted(root.rglob("*.pdf"), key=key):
        if len(picked) < PER_PACKAGE and pdf.name not in used and eligible(pdf):
            picked.append(pdf)
            used.add(pdf.name)
    return picked


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(out: Path, tmp: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    used = used_names()
    for package, (version, licence) in PACKAGES.items():
        subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=tmp, check=True, capture_output=True)
        (deb,) = tmp.glob(f"{package}_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / package)], check=True)
        for pdf in choose(package, tmp / package, used):
            shutil.copyfile(pdf, out / pdf.name)
            rows.append([pdf.name, package, version, licence, sha256(out / pdf.name)])
    return rows


def main(out: Path, write_sources: bool) -> None:
    if (out / ".complete").is_file():
        print(f"layout truth set 2 already in {out}")
        return
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layout2-") as tmp:
        rows = fetch(out, Path(tmp))
    lines = ["file\tdebian_package\tversion\tlicence\tsha256"] + ["\t".join(r) for r in rows]
    if write_sources:
        SOURCES.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif SOURCES.read_text(encoding="utf-8").splitlines() != lines:
        sys.exit(f"{out}: the fetched files differ from {SOURCES} (package versions or rule changed)")
    (out / ".complete").write_text(f"{len(rows)} files\n")
    print(f"layout truth set 2: {len(rows)} PDFs in {out}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(Path(args[0]) if args else ROOT / "tests/data/layout2/pdfs", "--write-sources" in sys.argv)
