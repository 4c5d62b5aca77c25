"""Checks over the shipped German-English corpus in data/de-en."""

from __future__ import annotations

import functools
import pathlib

import pytest

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "data" / "de-en"
SPLITS = ("train", "dev", "test")
LANGS = ("de", "en")

# Expected split sizes (inclusive ranges).
SIZES = {"dev": (900, 1100), "test": (1800, 2200), "train": (20_000, 60_000)}


@functools.cache
def read_lines(split: str, lang: str) -> tuple[str, ...]:
    """Read one corpus file strictly as UTF-8 and return its lines."""
    raw = (CORPUS / f"{split}.{lang}").read_bytes()
    text = raw.decode("utf-8", errors="strict")
    assert text.endswith("\n"), f"{split}.{lang} must end with a newline"
    return tuple(text[:-1].split("\n"))


@pytest.mark.parametrize("split", SPLITS)
def test_parallel_files_have_equal_line_counts(split: str) -> None:
    assert len(read_lines(split, "de")) == len(read_lines(split, "en"))


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("lang", LANGS)
def test_no_empty_or_malformed_lines(split: str, lang: str) -> None:
    for number, line in enumerate(read_lines(split, lang), start=1):
        assert line.strip(), f"{split}.{lang}:{number} is empty"
        assert line == line.strip(), f"{split}.{lang}:{number} has outer whitespace"
        assert "\t" not in line and "\r" not in line, f"{split}.{lang}:{number}"
        assert "\ufeff" not in line, f"{split}.{lang}:{number} contains a BOM"


@pytest.mark.parametrize("split", SPLITS)
def test_sides_differ(split: str) -> None:
    pairs = zip(read_lines(split, "de"), read_lines(split, "en"), strict=True)
    same = [de for de, en in pairs if de == en]
    assert not same, f"untranslated pairs in {split}: {same[:3]}"


@pytest.mark.parametrize("split", SPLITS)
def test_split_sizes(split: str) -> None:
    low, high = SIZES[split]
    assert low <= len(read_lines(split, "de")) <= high


@pytest.mark.parametrize("held_out", ["dev", "test"])
def test_held_out_sources_not_in_train(held_out: str) -> None:
    train = set(read_lines("train", "de"))
    leaked = [line for line in read_lines(held_out, "de") if line in train]
    assert not leaked, f"{len(leaked)} {held_out} sentences in train: {leaked[:3]}"


def test_dev_sources_not_in_test() -> None:
    test = set(read_lines("test", "de"))
    leaked = [line for line in read_lines("dev", "de") if line in test]
    assert not leaked, f"{len(leaked)} dev sentences in test: {leaked[:3]}"


@pytest.mark.parametrize("split", SPLITS)
def test_no_duplicate_sources_within_split(split: str) -> None:
    lines = read_lines(split, "de")
    assert len(set(lines)) == len(lines)


def test_sources_file_records_versions() -> None:
    text = (CORPUS / "SOURCES.txt").read_text(encoding="utf-8")
    for package in ("trans-de-en", "libreoffice-help-de", "libreoffice-help-en-us"):
        assert package in text
