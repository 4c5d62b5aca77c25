"""Sentencepiece subword models: train, load from bytes, encode, decode.

The special token ids are defined here and nowhere else.
"""

from __future__ import annotations

import gc
import io
import logging
import random
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from tfcli.atomic import write_atomic
from tfcli.config import TokenizerConfig
from tfcli.data.sampling import sample_sides, shared_sample
from tfcli.errors import DataError, read_error
from tfcli.run_dir import RunDir

log = logging.getLogger(__name__)

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3


class Tokenizer:
    """One sentencepiece model, held as its serialized bytes so a checkpoint can carry it."""

    def __init__(self, model_bytes: bytes) -> None:
        import sentencepiece as spm

        self.model_bytes = bytes(model_bytes)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self.model_bytes)
        except Exception as e:  # sentencepiece raises plain RuntimeError/OSError
            raise DataError(f"not a sentencepiece model ({e})") from None
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise DataError(
                f"sentencepiece model has special ids pad/unk/bos/eos = {ids}; "
                f"tfcli needs {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)} (train it with tfcli)"
            )

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a `.model` file."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise DataError(read_error(path, e, "sentencepiece model")) from None
        try:
            return cls(data)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None

    def save(self, path: str | Path) -> None:
        """Write the `.model` file atomically (a run directory holds no half-written file)."""
        write_atomic(path, lambda f: f.write(self.model_bytes), "sentencepiece model")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, lines: Sequence[str]) -> list[list[int]]:
        """Subword ids of each line, without BOS/EOS."""
        return self.sp.encode(list(lines), out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenized text of one id sequence; special ids are skipped."""
        return self.sp.decode([i for i in ids if i > EOS_ID])

    def pieces(self, line: str) -> list[str]:
        return self.sp.encode(line, out_type=str)


def train_tokenizer(
    lines: Iterable[str], cfg: TokenizerConfig | None = None, seed: int = 1
) -> Tokenizer:
    """Train a sentencepiece model on `lines` with the settings of `cfg`.

    At most `cfg.max_sentences` lines are used (a random sample, drawn with `seed`). A
    vocabulary larger than the data supports is reduced to what sentencepiece can build (with
    a warning) rather than failing, so tiny corpora still train.
    """
    cfg = cfg or TokenizerConfig()
    sample = [s for s in lines if s.strip()]
    if len(sample) > cfg.max_sentences:
        sample = random.Random(seed).sample(sample, cfg.max_sentences)
    with tempfile.TemporaryDirectory(prefix="tfcli-spm-") as tmp:
        path = _write_sample(sample, Path(tmp) / "sample.txt")
        return _train_on_file(path, len(sample), cfg)


def _write_sample(lines: Sequence[str], path: Path) -> Path:
    """The sample as a text file, one sentence a line, so sentencepiece reads it from disk
    and the Python strings can be freed before its training (which is the memory peak)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    return path


def _train_on_file(path: Path, count: int, cfg: TokenizerConfig) -> Tokenizer:
    """Train on the `count` lines of `path`. Sentencepiece holds about 1.7 KB of memory per
    sentence of ordinary text while it trains (1.7 GB at 1M lines, measured); that is what
    `tokenizer.max_sentences` bounds."""
    import sentencepiece as spm

    if count == 0:
        raise DataError("no text to train the sentencepiece model on")
    size = cfg.vocab_size
    while True:
        proto = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                input=str(path),
                model_writer=proto,
                vocab_size=size,
                model_type=cfg.type,
                character_coverage=cfg.character_coverage,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                input_sentence_size=cfg.max_sentences,
                shuffle_input_sentence=False,
                num_threads=2,
                minloglevel=2,
                hard_vocab_limit=True,
            )
            break
        except RuntimeError as e:
            # "Vocabulary size too high (8000). Please set it to a value <= 3410."
            text = str(e)
            marker = "value <= "
            if marker not in text or size <= 16:
                raise DataError(f"sentencepiece training failed: {text}") from None
            size = int(text.split(marker)[1].split(".")[0])
            log.warning(
                "vocabulary size %d is too large for this data; using %d", cfg.vocab_size, size
            )
    return Tokenizer(proto.getvalue())


def _sample_files(
    cfg: TokenizerConfig, src_path: Path, tgt_path: Path, directory: Path
) -> list[tuple[Path, int]]:
    """The tokenizer sample(s) of the training files, written to `directory`: one file drawn
    from both sides when shared, else one per side. The sampled lines die on return, so
    they are not held while sentencepiece trains."""
    sides = sample_sides(src_path, tgt_path, cfg.max_sentences)
    if cfg.shared:
        groups = [shared_sample(*sides, cfg.max_sentences)]
    else:
        groups = [side.lines for side in sides]
    return [
        (_write_sample(lines, directory / f"sample-{i}.txt"), len(lines))
        for i, lines in enumerate(groups)
    ]


def prepare_tokenizers(cfg: TokenizerConfig, run: RunDir, src_path: Path, tgt_path: Path) -> None:
    """Put the run's sentencepiece model(s) into the run directory: kept if there, copied if
    given, else trained on the training files (source and target together when shared), on a
    sample of at most `cfg.max_sentences` lines drawn as the files stream past."""
    if run.shared_spm.exists() or (run.src_spm.exists() and run.tgt_spm.exists()):
        return
    if cfg.shared and cfg.model:
        Tokenizer.load(cfg.model).save(run.shared_spm)
        return
    if not cfg.shared and cfg.src_model and cfg.tgt_model:
        Tokenizer.load(cfg.src_model).save(run.src_spm)
        Tokenizer.load(cfg.tgt_model).save(run.tgt_spm)
        return
    with tempfile.TemporaryDirectory(prefix="tfcli-spm-") as tmp:
        files = _sample_files(cfg, src_path, tgt_path, Path(tmp))
        gc.collect()  # give the sample's memory back before sentencepiece takes its own
        if cfg.shared:
            ((path, count),) = files
            log.info(
                "training a shared %s sentencepiece model of %d subwords on %d lines",
                cfg.type,
                cfg.vocab_size,
                count,
            )
            _train_on_file(path, count, cfg).save(run.shared_spm)
            return
        log.info(
            "training %s sentencepiece models of %d subwords per side", cfg.type, cfg.vocab_size
        )
        (src_file, src_n), (tgt_file, tgt_n) = files
        _train_on_file(src_file, src_n, cfg).save(run.src_spm)
        _train_on_file(tgt_file, tgt_n, cfg).save(run.tgt_spm)


def load_run_tokenizers(run: RunDir) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers stored in a run directory."""
    if run.shared_spm.exists():
        tok = Tokenizer.load(run.shared_spm)
        return tok, tok
    return Tokenizer.load(run.src_spm), Tokenizer.load(run.tgt_spm)
