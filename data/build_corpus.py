#!/usr/bin/env python3
"""Build the German-English parallel corpus in ``data/de-en`` from Debian packages.

Two human-translated sources are combined:

* the Ding German-English dictionary (package ``trans-de-en``), whose entries
  contain many example sentences with their English translations;
* the LibreOffice help pages (packages ``libreoffice-help-de`` and
  ``libreoffice-help-en-us``), whose paragraphs carry the same identifiers
  in every language and therefore align one-to-one.

The script downloads the packages with ``apt-get download``, extracts them
with ``dpkg-deb -x``, cleans and filters the sentence pairs, removes
duplicates and writes a deterministic train/dev/test split.  Running it twice
on the same package versions produces byte-identical files.

Usage::

    python data/build_corpus.py [--out DIR] [--work DIR] [--any-version]
"""

from __future__ import annotations

import argparse
import hashlib
import html
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = DATA_DIR / "de-en"

DING = "ding"
LIBREOFFICE = "libreoffice"
SOURCES = (DING, LIBREOFFICE)

# Package versions the shipped corpus was built from.
PINNED_VERSIONS: dict[str, str] = {
    "trans-de-en": "1.9-6",
    "libreoffice-help-de": "4:7.4.7-1+deb12u14",
    "libreoffice-help-en-us": "4:7.4.7-1+deb12u14",
}

DING_FILE = Path("usr/share/trans/de-en")
LO_HELP_DIR = Path("usr/share/libreoffice/help")

DEV_SIZE = 1000
TEST_SIZE = 2000
SPLIT_SALT = "tfcli-de-en-v1"

MIN_WORDS = 4
MAX_WORDS = 60
MIN_RATIO = 0.5
MAX_RATIO = 2.0

Pair = tuple[str, str]


# --------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A downloaded Debian package and where its files were extracted."""

    name: str
    version: str
    sha256: str
    deb: Path
    root: Path


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a command and return its standard output, failing loudly."""
    result = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr}"
        )
    return result.stdout


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_deb(work: Path, name: str) -> Path | None:
    """Return an already downloaded ``.deb`` for ``name`` in ``work``, if any."""
    candidates = sorted(work.glob(f"{name}_*.deb"))
    return candidates[-1] if candidates else None


def download_deb(work: Path, name: str, version: str | None) -> Path:
    """Download one package into ``work`` with ``apt-get download``."""
    spec = f"{name}={version}" if version else name
    try:
        run(["apt-get", "download", spec], cwd=work)
    except RuntimeError as err:
        hint = (
            f"\nPackage {spec} could not be downloaded. If this exact version is "
            "no longer in the archive, put its .deb (for example from "
            "https://snapshot.debian.org/) into the --work directory, or pass "
            "--any-version to build from the current version (the corpus will "
            "then differ from the shipped one)."
        )
        raise RuntimeError(str(err) + hint) from err
    deb = find_deb(work, name)
    if deb is None:
        raise RuntimeError(f"apt-get download did not produce a .deb for {name}")
    return deb


def deb_version(deb: Path) -> str:
    """Return the ``Version`` field of a ``.deb`` file."""
    return run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def fetch_package(work: Path, name: str, pinned: bool) -> Package:
    """Download (or reuse) and extract one package below ``work``."""
    deb = find_deb(work, name)
    if deb is None:
        deb = download_deb(work, name, PINNED_VERSIONS[name] if pinned else None)
    version = deb_version(deb)
    if pinned and version != PINNED_VERSIONS[name]:
        raise RuntimeError(
            f"{deb.name} has version {version}, expected {PINNED_VERSIONS[name]}; "
            "remove it or pass --any-version"
        )
    root = work / f"{name}.root"
    if root.exists():
        shutil.rmtree(root)
    run(["dpkg-deb", "-x", str(deb), str(root)])
    return Package(name, version, file_sha256(deb), deb, root)


# --------------------------------------------------------------------------
# Text cleaning and filtering shared by both sources
# --------------------------------------------------------------------------

_SPACE_RE = re.compile(r"\s+")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))
_MARKUP_RE = re.compile(r"</?[A-Za-z][^<>]*>|<\?>|&[A-Za-z]+;|&#\d+;|\$\[[a-z]+\]|%[A-Z]{4,}\b")
_PLACEHOLDER_RE = re.compile(r"\b(?:xxx+|lorem ipsum|TODO|FIXME)\b", re.IGNORECASE)
_FORBIDDEN_CHARS = frozenset("|\ufffd")
_SENTENCE_END = (".", "!", "?")


def clean_text(text: str) -> str:
    """Normalise Unicode and whitespace so the text fits on one line."""
    text = unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH)
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Zs") else ch for ch in text
    )
    return _SPACE_RE.sub(" ", text).strip()


def word_count(text: str) -> int:
    """Count whitespace-separated tokens."""
    return len(text.split())


def looks_like_sentence(text: str) -> bool:
    """Return True for text that starts like a sentence and ends with . ! or ?."""
    if not text or not text.endswith(_SENTENCE_END):
        return False
    first = text.lstrip("\"'„“”‚‘’»«(")[:1]
    return first.isupper() or first.isdigit()


def has_bad_content(text: str) -> bool:
    """Detect leftover markup, placeholders and line-breaking characters."""
    if any(ch in _FORBIDDEN_CHARS for ch in text):
        return True
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") for ch in text):
        return True
    return bool(_MARKUP_RE.search(text) or _PLACEHOLDER_RE.search(text))


def keep_pair(de: str, en: str) -> bool:
    """Apply the length, ratio, sentence and identity filters to a pair."""
    if not de or not en or de.casefold() == en.casefold():
        return False
    for side in (de, en):
        if not MIN_WORDS <= word_count(side) <= MAX_WORDS:
            return False
        if not looks_like_sentence(side) or has_bad_content(side):
            return False
    ratio = len(de) / len(en)
    return MIN_RATIO <= ratio <= MAX_RATIO


def dedup_key(text: str) -> str:
    """Key under which near-identical sentences count as duplicates."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"\w+", folded))


# --------------------------------------------------------------------------
# Ding dictionary
# --------------------------------------------------------------------------

_DING_TAG_RE = re.compile(r"\s*(?:\{[^{}]*\}|\[[^\[\]]*\]|<[^<>]*>)")
_DING_PAREN_RE = re.compile(r"\([^()]*\)")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,!?;:])")
_DING_TEMPLATE_RE = re.compile(r"\b(?:jd[mnrs]|etw|sb|sth)\.(?=\s|$)|…|\.\.|/")


def strip_ding_tags(text: str) -> str:
    """Remove ``{m}``, ``[ugs.]`` and ``<keyword>`` style annotations."""
    previous = None
    while previous != text:
        previous, text = text, _DING_TAG_RE.sub("", text)
    return clean_text(text)


def drop_parentheses(text: str) -> str:
    """Remove parenthesised optional words and comments, innermost first."""
    previous = None
    while previous != text:
        previous, text = text, _DING_PAREN_RE.sub("", text)
    return _SPACE_BEFORE_PUNCT_RE.sub(r"\1", clean_text(text))


def first_alternative(text: str) -> str:
    """Return the first of several ``;``-separated alternatives."""
    return text.split(";", 1)[0].strip()


def ding_sub_entries(line: str) -> Iterator[Pair]:
    """Yield aligned ``(german, english)`` sub-entries of one dictionary line."""
    if line.startswith("#") or line.count(" :: ") != 1:
        return
    german, english = line.split(" :: ")
    de_parts = german.split(" | ")
    en_parts = english.split(" | ")
    if len(de_parts) != len(en_parts):
        return
    yield from zip(de_parts, en_parts, strict=True)


def clean_ding_pair(de_raw: str, en_raw: str) -> Pair | None:
    """Turn one raw sub-entry into a clean sentence pair, or None."""
    de = first_alternative(drop_parentheses(strip_ding_tags(html.unescape(de_raw))))
    en = first_alternative(drop_parentheses(strip_ding_tags(html.unescape(en_raw))))
    if "(" in de + en or ")" in de + en:
        return None
    if _DING_TEMPLATE_RE.search(de) or _DING_TEMPLATE_RE.search(en):
        return None
    if any(ch in "{}[]<>" for ch in de + en):
        return None
    return (de, en) if keep_pair(de, en) else None


def ding_data_version(path: Path) -> str:
    """Return the ``# Version ::`` header of the Ding file, or ``unknown``."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            if line.startswith("# Version ::"):
                return line.split("::", 1)[1].strip()
    return "unknown"


def ding_pairs(path: Path) -> list[Pair]:
    """Extract example sentence pairs from the Ding ``de-en`` file."""
    pairs: list[Pair] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            for de_raw, en_raw in ding_sub_entries(line.rstrip("\n")):
                pair = clean_ding_pair(de_raw, en_raw)
                if pair is not None:
                    pairs.append(pair)
    return pairs


# --------------------------------------------------------------------------
# LibreOffice help
# --------------------------------------------------------------------------

_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6"})
_VOID_TAGS = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)
_SKIP_TAGS = frozenset({"script", "style", "noscript", "pre", "code", "nav"})
_SKIP_CLASSES = frozenset({"bascode", "pycode", "debug", "smathcode", "sqlcode"})
_SWITCH_CLASSES = frozenset({"switch", "switchinline"})
_PARAGRAPH_ID_RE = re.compile(r"^(?:par|hd)_id\w*$")
_PRODUCT_RE = re.compile(r"\$\[officename\]|%PRODUCTNAME")


@dataclass
class _Element:
    """An open HTML element on the parser stack."""

    tag: str
    skip: bool
    is_switch: bool
    has_default: bool = False


@dataclass
class _Paragraph:
    """A paragraph being collected."""

    ident: str
    depth: int
    parts: list[str] = field(default_factory=list)
    tainted: bool = False


class HelpPageParser(HTMLParser):
    """Collect the text of identified paragraphs of one help page.

    Inline elements (emphasis, links, menu items, extended help) keep their
    text.  Of system- or application-specific variants only the default one
    is kept; a paragraph containing a variant switch without a default is
    marked as unusable.
    """

    def __init__(self) -> None:
        """Initialise an empty parser."""
        super().__init__(convert_charrefs=True)
        self.stack: list[_Element] = []
        self.current: _Paragraph | None = None
        self.paragraphs: list[tuple[str, str, bool]] = []

    def _skipping(self) -> bool:
        """Return True inside an element whose text must be ignored."""
        return any(element.skip for element in self.stack)

    def _finish_paragraph(self) -> None:
        """Store the paragraph being collected."""
        if self.current is not None:
            text = "".join(self.current.parts)
            self.paragraphs.append((self.current.ident, text, self.current.tainted))
            self.current = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Track element nesting, variants and paragraph starts."""
        attributes = {key: value or "" for key, value in attrs}
        if tag in _VOID_TAGS:
            if tag == "br" and self.current is not None and not self._skipping():
                self.current.parts.append(" ")
            return
        ident = attributes.get("id", "")
        classes = set(attributes.get("class", "").split())
        hidden = "hidden" in attributes
        if hidden and self.stack and ident.startswith("default"):
            self.stack[-1].has_default = True
        skip = (
            tag in _SKIP_TAGS
            or bool(classes & _SKIP_CLASSES)
            or (hidden and not ident.startswith("default"))
        )
        if tag in _PARAGRAPH_TAGS and self.current is not None:
            self._finish_paragraph()
        self.stack.append(_Element(tag, skip, bool(classes & _SWITCH_CLASSES)))
        if tag in _PARAGRAPH_TAGS and _PARAGRAPH_ID_RE.match(ident) and not self._skipping():
            self.current = _Paragraph(ident, len(self.stack))

    def handle_endtag(self, tag: str) -> None:
        """Close elements up to the matching start tag."""
        if not any(element.tag == tag for element in self.stack):
            return
        while self.stack:
            element = self.stack.pop()
            if element.is_switch and not element.has_default and self.current is not None:
                self.current.tainted = True
            if self.current is not None and len(self.stack) < self.current.depth:
                self._finish_paragraph()
            if element.tag == tag:
                break

    def handle_data(self, data: str) -> None:
        """Collect text inside a paragraph."""
        if self.current is not None and not self._skipping():
            self.current.parts.append(data)

    def close(self) -> None:
        """Flush a paragraph left open at the end of the page."""
        super().close()
        self._finish_paragraph()


def help_paragraphs(path: Path) -> dict[tuple[str, int], tuple[str, bool]]:
    """Map ``(paragraph id, occurrence)`` to ``(text, tainted)`` for one page."""
    parser = HelpPageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    seen: dict[str, int] = {}
    result: dict[tuple[str, int], tuple[str, bool]] = {}
    for ident, text, tainted in parser.paragraphs:
        occurrence = seen.get(ident, 0)
        seen[ident] = occurrence + 1
        result[(ident, occurrence)] = (text, tainted)
    return result


def clean_help_text(text: str) -> str:
    """Clean one help paragraph and replace product-name variables."""
    return clean_text(_PRODUCT_RE.sub("LibreOffice", text))


def align_help_page(en_page: Path, de_page: Path) -> Iterator[Pair]:
    """Yield the sentence pairs of one help page in both languages."""
    english = help_paragraphs(en_page)
    german = help_paragraphs(de_page)
    for key, (en_raw, en_tainted) in english.items():
        if key not in german:
            continue
        de_raw, de_tainted = german[key]
        if en_tainted or de_tainted:
            continue
        de, en = clean_help_text(de_raw), clean_help_text(en_raw)
        if keep_pair(de, en):
            yield de, en


def libreoffice_pairs(en_root: Path, de_root: Path) -> list[Pair]:
    """Extract aligned paragraph pairs from the English and German help."""
    pairs: list[Pair] = []
    for en_page in sorted((en_root / "text").rglob("*.html")):
        de_page = de_root / en_page.relative_to(en_root)
        if de_page.is_file():
            pairs.extend(align_help_page(en_page, de_page))
    return pairs


# --------------------------------------------------------------------------
# De-duplication, splitting and output
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A sentence pair with its origin."""

    source: str
    de: str
    en: str

    @property
    def order_key(self) -> str:
        """Stable pseudo-random key used for splitting and ordering."""
        text = f"{SPLIT_SALT}\t{dedup_key(self.de)}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def deduplicate(examples: Iterable[Example]) -> list[Example]:
    """Keep the first pair for every German and every English sentence."""
    seen_de: set[str] = set()
    seen_en: set[str] = set()
    unique: list[Example] = []
    for example in examples:
        key_de, key_en = dedup_key(example.de), dedup_key(example.en)
        if key_de in seen_de or key_en in seen_en:
            continue
        seen_de.add(key_de)
        seen_en.add(key_en)
        unique.append(example)
    return unique


def proportional_sizes(counts: dict[str, int], total: int) -> dict[str, int]:
    """Distribute ``total`` over sources in proportion to their sizes."""
    available = sum(counts.values())
    sizes: dict[str, int] = {}
    remaining = total
    names = list(counts)
    for name in names[:-1]:
        sizes[name] = round(total * counts[name] / available)
        remaining -= sizes[name]
    sizes[names[-1]] = remaining
    return sizes


def split_examples(examples: list[Example]) -> dict[str, list[Example]]:
    """Split deterministically into train/dev/test, proportionally per source."""
    by_source = {
        source: sorted((ex for ex in examples if ex.source == source), key=lambda ex: ex.order_key)
        for source in SOURCES
    }
    counts = {source: len(items) for source, items in by_source.items()}
    test_sizes = proportional_sizes(counts, TEST_SIZE)
    dev_sizes = proportional_sizes(counts, DEV_SIZE)
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for source, items in by_source.items():
        n_test, n_dev = test_sizes[source], dev_sizes[source]
        splits["test"].extend(items[:n_test])
        splits["dev"].extend(items[n_test : n_test + n_dev])
        splits["train"].extend(items[n_test + n_dev :])
    for name in splits:
        splits[name].sort(key=lambda ex: ex.order_key)
    return splits


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write one sentence per line as UTF-8 with ``\\n`` line endings."""
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            if not line or "\n" in line or "\r" in line or "\t" in line:
                raise ValueError(f"refusing to write malformed line: {line!r}")
            handle.write(line + "\n")


def write_splits(out: Path, splits: dict[str, list[Example]]) -> None:
    """Write ``{split}.de`` and ``{split}.en`` for every split."""
    out.mkdir(parents=True, exist_ok=True)
    for name, items in splits.items():
        write_lines(out / f"{name}.de", (ex.de for ex in items))
        write_lines(out / f"{name}.en", (ex.en for ex in items))


def count_table(splits: dict[str, list[Example]]) -> list[str]:
    """Render pair counts per split and source as aligned text rows."""
    rows = [f"{'split':<8}{'ding':>8}{'libreoffice':>13}{'total':>8}"]
    for name, items in splits.items():
        ding = sum(ex.source == DING for ex in items)
        rows.append(f"{name:<8}{ding:>8}{len(items) - ding:>13}{len(items):>8}")
    return rows


def write_sources(
    out: Path, packages: list[Package], ding_data: str, splits: dict[str, list[Example]]
) -> None:
    """Record package versions, checksums and pair counts in SOURCES.txt."""
    lines = [
        "German-English corpus built by data/build_corpus.py",
        "",
        "Debian packages (bookworm):",
    ]
    for package in packages:
        lines.append(f"  {package.name} {package.version} sha256={package.sha256}")
    lines += ["", f"Ding dictionary data version: {ding_data}"]
    lines += ["", "Pairs per split and source:"]
    lines += [f"  {row}" for row in count_table(splits)]
    text = "\n".join(lines) + "\n"
    (out / "SOURCES.txt").write_text(text, encoding="utf-8", newline="\n")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output directory (default: data/de-en)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="directory for downloaded packages; .deb files found there are reused "
        "(default: a temporary directory)",
    )
    parser.add_argument(
        "--any-version",
        action="store_true",
        help="accept whatever package versions apt provides instead of the pinned ones",
    )
    return parser.parse_args(argv)


def build(out: Path, work: Path, pinned: bool) -> dict[str, list[Example]]:
    """Download, extract, clean, de-duplicate, split and write the corpus."""
    work.mkdir(parents=True, exist_ok=True)
    names = ("trans-de-en", "libreoffice-help-en-us", "libreoffice-help-de")
    packages = {name: fetch_package(work, name, pinned) for name in names}
    for package in packages.values():
        print(f"{package.name} {package.version}")
    ding = ding_pairs(packages["trans-de-en"].root / DING_FILE)
    office = libreoffice_pairs(
        packages["libreoffice-help-en-us"].root / LO_HELP_DIR / "en-US",
        packages["libreoffice-help-de"].root / LO_HELP_DIR / "de",
    )
    print(f"extracted: ding={len(ding)} libreoffice={len(office)}")
    examples = [Example(DING, de, en) for de, en in ding]
    examples += [Example(LIBREOFFICE, de, en) for de, en in office]
    splits = split_examples(deduplicate(examples))
    write_splits(out, splits)
    ding_data = ding_data_version(packages["trans-de-en"].root / DING_FILE)
    write_sources(out, list(packages.values()), ding_data, splits)
    print("\n".join(count_table(splits)))
    return splits


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.work is not None:
        build(args.out, args.work.resolve(), not args.any_version)
    else:
        with tempfile.TemporaryDirectory(prefix="tfcli-corpus-") as tmp:
            build(args.out, Path(tmp), not args.any_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
