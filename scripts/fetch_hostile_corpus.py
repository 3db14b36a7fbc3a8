"""Fetch the hostile PDF corpus for tests/test_robust.py: 100+ odd real PDFs from public package registries.

Sources (pinned versions; licences recorded per file in OUT/SOURCES.tsv, summary in tests/HOSTILE_SOURCES.md):
- PyPI sdists, through pip: pypdf 7.1.1 (`resources/`: encryption variants, forms, broken and odd files;
  BSD-3-Clause) and pikepdf 10.18.0 (`tests/resources/`: fuzzed files, cyclic outlines, content-stream errors,
  JBIG2/CCITT images; per-file SPDX licences from its REUSE.toml, default MPL-2.0).
- Debian packages, through apt-get download + dpkg-deb -x: texlive-latex-base-doc (source2e.pdf, 500+ pages;
  encguide.pdf, odd font encodings), texlive-lang-arabic (right-to-left text), texlive-lang-chinese (CJK text);
  licences per the packages' debian/copyright (LPPL-1.3c, GPL and others, all free).

Usage: python scripts/fetch_hostile_corpus.py [OUT]   (default tests/data/hostile; a no-op once complete)
Nothing is committed: OUT is ignored by git. Needs network access to PyPI and Debian's archive.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SDISTS = {"pypdf": ("7.1.1", "resources/"), "pikepdf": ("10.18.0", "tests/resources/")}
DEBIAN = {
    "texlive-latex-base-doc": ["source2e.pdf", "encguide.pdf", "fntguide.pdf", "cyrguide.pdf"],
    "texlive-lang-arabic": ["*.pdf"],
    "texlive-lang-chinese": ["*.pdf"],
}
MAX_FILE_MB = 12.0
MAX_PER_PACKAGE = 12


def main(out: Path) -> None:
    if (out / ".complete").is_file():
        print(f"hostile corpus already in {out}")
        return
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        for name, (version, folder) in SDISTS.items():
            rows += _from_sdist(name, version, folder, Path(tmp), out)
        for package, patterns in DEBIAN.items():
            rows += _from_debian(package, patterns, Path(tmp), out)
    lines = ["file\tlicence\tsource"] + ["\t".join(row) for row in sorted(rows)]
    (out / "SOURCES.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / ".complete").write_text(f"{len(rows)} files\n")
    print(f"hostile corpus: {len(rows)} PDFs in {out}")


def _from_sdist(name: str, version: str, folder: str, tmp: Path, out: Path) -> list[tuple[str, str, str]]:
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*pip, f"{name}=={version}", "-d", str(tmp)], check=True)
    (archive,) = [p for p in tmp.glob("*.tar.gz") if p.name.lower().startswith(name.lower())]
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / name, filter="data")
    base = next((tmp / name).iterdir())
    licences = _reuse_licences(base)
    rows = []
    for pdf in sorted((base / folder).rglob("*.pdf")):
        rel = pdf.relative_to(base).as_posix()
        target = out / name / pdf.relative_to(base / folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pdf, target)
        licence = _licence_of(rel, licences) or ("BSD-3-Clause" if name == "pypdf" else "MPL-2.0")
        rows.append((target.relative_to(out).as_posix(), licence, f"PyPI sdist {name}-{version}: {rel}"))
    return rows


def _reuse_licences(base: Path) -> list[tuple[list[str], str]]:
    reuse = base / "REUSE.toml"
    if not reuse.is_file():
        return []
    data = tomllib.loads(reuse.read_text(encoding="utf-8"))
    found = []
    for note in data.get("annotations", []):
        paths = note.get("path", [])
        found.append(([paths] if isinstance(paths, str) else list(paths), note.get("SPDX-License-Identifier", "")))
    return found


def _licence_of(rel: str, licences: list[tuple[list[str], str]]) -> str | None:
    for patterns, spdx in reversed(licences):  # later annotations are more specific
        if spdx and any(fnmatch.fnmatch(rel, p.replace("**", "*")) for p in patterns):
            return spdx
    return None


def _from_debian(package: str, patterns: list[str], tmp: Path, out: Path) -> list[tuple[str, str, str]]:
    where = tmp / package
    where.mkdir()
    subprocess.run(["apt-get", "download", "-q", package], cwd=where, check=True, stdout=subprocess.DEVNULL)
    (deb,) = where.glob("*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(where / "x")], check=True)
    picked = [
        p
        for p in sorted((where / "x").rglob("*.pdf"))
        if any(fnmatch.fnmatch(p.name, pat) for pat in patterns) and p.stat().st_size <= MAX_FILE_MB * 1e6
    ][:MAX_PER_PACKAGE]
    rows = []
    for pdf in picked:
        target = out / "debian" / package / f"{pdf.parent.name}--{pdf.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pdf, target)
        source = f"Debian package {deb.stem}: /{pdf.relative_to(where / 'x').as_posix()}"
        rows.append((target.relative_to(out).as_posix(), "free (LPPL/GPL; see the package's copyright)", source))
    return rows


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "hostile")
