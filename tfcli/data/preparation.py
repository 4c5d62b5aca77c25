"""`tfcli prepare` (and the first start of `tfcli train`): the tokenizers, then the training
pairs encoded once into a prepared corpus (prepared.py) that later starts memory-map.

The prepared directory is named after its cache key (cache_key.py): a change of a source
file, a tokenizer or a filter gives another key and so a new build; an unchanged corpus is
reused. A build is written into a temporary directory, fsynced and renamed into place at the
end, so an interrupted build never looks complete; its leftovers go on the next run.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tfcli.atomic import fsync_dir, write_error
from tfcli.config import Config
from tfcli.data.cache_key import corpus_key
from tfcli.data.encode_workers import Filters, default_workers, encode_in_order, token_dtype
from tfcli.data.line_chunks import parallel_chunks
from tfcli.data.prepared import PreparedWriter, read_meta
from tfcli.data.text import resolve_path
from tfcli.data.tokenizer import load_run_tokenizers, prepare_tokenizers
from tfcli.errors import ConfigError, DataError, TfcliError
from tfcli.run_dir import RunDir

log = logging.getLogger(__name__)

Progress = Callable[[int, float], None]  # (lines read, share of the source file read)
TEMP_PREFIX = ".tmp-"


def training_paths(cfg: Config) -> tuple[Path, Path]:
    """The training files of `data.train`; a config without them is refused."""
    d = cfg.data
    if not d.train:
        raise ConfigError("data.train: no training data given (a prefix like data/de-en/train)")
    return resolve_path(d.train, d.src_lang), resolve_path(d.train, d.tgt_lang)


def cache_root(cfg: Config, run: RunDir) -> Path:
    """`data.cache_dir`, or the run directory's own prepared/."""
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else run.prepared


class LogProgress:
    """Progress as log lines (stderr is not a terminal): one at every tenth of the corpus."""

    def __init__(self) -> None:
        self.start, self.next = time.monotonic(), 0.1

    def __call__(self, lines: int, done: float) -> None:
        if done < self.next:
            return
        rate = lines / max(time.monotonic() - self.start, 1e-9)
        log.info("prepared %d lines (%.0f%%, %.0f lines/s)", lines, 100 * done, rate)
        self.next = int(done * 10 + 1) / 10


def prepare_corpus(cfg: Config, run: RunDir, progress: Progress | None = None) -> Path:
    """The run's tokenizers, and the complete prepared directory of its training data (reused
    when its key matches, else built)."""
    src_path, tgt_path = training_paths(cfg)
    _make_dir(run.path)
    prepare_tokenizers(cfg.tokenizer, run, src_path, tgt_path)
    src_tok, tgt_tok = load_run_tokenizers(run)
    models = (src_tok.model_bytes, tgt_tok.model_bytes)
    d = cfg.data
    key = corpus_key((src_path, tgt_path), models, d.max_len, d.max_len_ratio)
    root = cache_root(cfg, run)
    final = root / key[:24]
    _make_dir(root)
    remove_leftovers(root)
    meta = read_meta(final)
    if meta is not None and meta.get("key") == key:
        log.info("reusing prepared data %s (%d pairs)", final, meta["pairs"])
        return final
    log.info("preparing %s / %s into %s", src_path, tgt_path, final)
    vocab = max(len(src_tok), len(tgt_tok))
    build(final, key, (src_path, tgt_path), models, vocab, cfg, progress or LogProgress())
    if not cfg.data.cache_dir:  # the run's own directory keeps only its current corpus
        for other in root.iterdir():
            if other != final and other.is_dir() and not other.name.startswith(TEMP_PREFIX):
                shutil.rmtree(other, ignore_errors=True)
    return final


def build(
    final: Path,
    key: str,
    sources: tuple[Path, Path],
    models: tuple[bytes, bytes],
    vocab: int,
    cfg: Config,
    progress: Progress,
) -> None:
    """Encode the training files into `final`, through a temporary directory renamed at the end."""
    tmp = final.with_name(f"{TEMP_PREFIX}{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _make_dir(tmp)
    dtype = token_dtype(vocab)
    writer = PreparedWriter(tmp, dtype)
    filters = Filters(cfg.data.max_len, cfg.data.max_len_ratio)
    workers = default_workers(cfg.data.workers)
    encoded = encode_in_order(parallel_chunks(*sources), models, filters, dtype, workers)
    try:
        for enc in encoded:
            if enc.bad_utf8 is not None:
                side, line = enc.bad_utf8
                raise DataError(f"{sources[side]}:{line}: not valid UTF-8")
            writer.add(enc)
            progress(writer.read, enc.done)
        writer.finish({"key": key, "sources": [str(p) for p in sources]})
        if final.exists():  # an earlier build of the same key that is not complete
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(final.parent)
    except OSError as e:
        raise TfcliError(write_error(final, e, "prepared data")) from None
    finally:
        encoded.close()  # stops the workers now, not when the generator is collected
        writer.close()
        shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(root: Path) -> None:
    """The temporary directories of builds that were interrupted (their process is gone)."""
    for path in root.glob(f"{TEMP_PREFIX}*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another process is building it now
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, the prepared data of an interrupted run", path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TfcliError(write_error(path, e, "prepared data directory")) from None
