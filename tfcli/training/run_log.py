"""The run's own log, train.log in the run directory: every start of the run appends to it what
training logs (resumes, config changes, validations, warnings), so the history of a run that
was stopped, resumed and changed stays with it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from tfcli.run_dir import RunDir

FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _RunLogHandler(logging.FileHandler):
    """A line the full disk cannot take is dropped: the checkpoint write that fails next says so
    (a logging traceback would only bury that line)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


@contextlib.contextmanager
def run_log(run: RunDir, enabled: bool) -> Iterator[None]:
    """Append the `tfcli` loggers' INFO records to train.log while training (process 0)."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("tfcli")
    handler = _RunLogHandler(run.log, encoding="utf-8", delay=True)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    level, consoles = logger.level, {}
    if logger.getEffectiveLevel() > logging.INFO:
        # the console shows warnings only (--quiet): the logger lets INFO through for the file,
        # and the console handlers filter it out themselves
        consoles = {h: h.level for h in logging.getLogger().handlers if h.level < logging.WARNING}
        for console in consoles:
            console.setLevel(logging.WARNING)
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)
        for console, was in consoles.items():
            console.setLevel(was)
