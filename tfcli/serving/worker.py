"""One thread that owns the model and translates the requests waiting for it together.

Requests come in from the event loop as jobs on a queue; the worker takes the first, then
every job already waiting (or arriving within `wait_s`) while their source tokens stay
within the token budget, and translates jobs with the same search settings in one call. Each
job's future gets its own results, in its own order, or the error that stopped them: no
accepted job is left without an answer, also when the server stops.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from tfcli.config import DecodeConfig
from tfcli.translation.translator import TextHypothesis, Translator

log = logging.getLogger(__name__)


class ShuttingDown(RuntimeError):
    """The server stopped before the job was translated."""


@dataclass(frozen=True)
class LineResult:
    """A line's hypotheses, best first, and their alignments when asked (else None)."""

    hypotheses: list[TextHypothesis]
    alignments: list[str] | None = None


@dataclass
class Job:
    """Lines to translate with one request's settings; `future` gets a LineResult per line."""

    lines: list[str]
    settings: DecodeConfig
    alignment: bool = False
    future: Future = field(default_factory=Future)
    tokens: int = 0  # source tokens, counted by the worker


_STOP = object()


class BatchWorker:
    """Translates queued jobs in batches on its own thread."""

    def __init__(self, translator: Translator, wait_s: float, max_requests: int) -> None:
        self.translator = translator
        self.wait_s, self.max_requests = wait_s, max_requests
        self.budget = translator.settings.batch_tokens
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._held: Job | None = None  # taken from the queue, over the last batch's budget
        self._thread = threading.Thread(target=self._run, name="tfcli-translate", daemon=True)
        self._stopping = False
        self._lock = threading.Lock()  # no job joins the queue after the stop mark
        self.requests = self.batches = 0
        self.translating = 0  # requests of the batch being translated now

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch at hand, fail the jobs still waiting, and end the thread."""
        with self._lock:
            self._stopping = True
            self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join()
        else:  # never started: nothing was translated
            self._fail_waiting()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Job) -> Future:
        with self._lock:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            self._queue.put(job)
        return job.future

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[Job] = []
            try:
                batch, stop = self._collect()
                self._translate(batch)
            except Exception as e:  # whatever went wrong, the jobs taken get their answer
                log.exception("batch failed")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
        self._fail_waiting()

    def _take(self, timeout: float | None) -> object:
        """The job held back, else the next item of the queue, waiting at most `timeout`
        seconds (None: until there is one); queue.Empty when none came."""
        if self._held is not None:
            job, self._held = self._held, None
            return job
        if timeout is None:
            item = self._queue.get()
        else:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        if isinstance(item, Job):
            try:
                ids = self.translator.src_tokenizer.encode(item.lines)  # before cuts: a budget
                item.tokens = sum(len(seq) + 1 for seq in ids)
            except Exception as e:  # the job is answered now, and left out of the batch
                item.future.set_exception(e)
        return item

    def _collect(self) -> tuple[list[Job], bool]:
        """The next batch: the first job, then those waiting within the budget."""
        first = self._take(None)
        if first is _STOP:
            return [], True
        batch, tokens = [first], first.tokens
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_requests:
            try:
                job = self._take(deadline - time.monotonic())
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            if tokens + job.tokens > self.budget:
                self._held = job
                break
            batch.append(job)
            tokens += job.tokens
        return batch, False

    def _translate(self, batch: Sequence[Job]) -> None:
        """Jobs with the same settings in one call each; every future gets its answer."""
        # a job answered already (its text could not be read) or given up by its client (the
        # connection closed) is left out; the others can no longer be cancelled
        batch = [
            j for j in batch if not j.future.done() and j.future.set_running_or_notify_cancel()
        ]
        if not batch:
            return
        self.batches += 1
        self.requests += len(batch)
        self.translating = len(batch)
        groups: dict[tuple[DecodeConfig, bool], list[Job]] = {}
        for job in batch:
            groups.setdefault((job.settings, job.alignment), []).append(job)
        for (settings, alignment), jobs in groups.items():
            try:
                self._answer(jobs, settings, alignment)
            except Exception as e:  # the job's request gets a 500, the server goes on
                log.exception("translation failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
        self.translating = 0

    def _answer(self, jobs: list[Job], settings: DecodeConfig, alignment: bool) -> None:
        """Translate the jobs' lines in one call; a job is answered as soon as its last line is
        done (alignments: once the whole call is), each with its lines' results in order."""
        from tfcli.translation.alignment import align
        from tfcli.translation.attention import attention_maps

        owners = [(j, n) for j, job in enumerate(jobs) for n in range(len(job.lines))]  # per line
        answers: list[list] = [[None] * len(job.lines) for job in jobs]
        left = [len(job.lines) for job in jobs]

        def ready(line: int, hyps: list[TextHypothesis]) -> None:
            j, n = owners[line]
            answers[j][n] = LineResult(hyps)
            left[j] -= 1
            if left[j] == 0 and not alignment:
                jobs[j].future.set_result(answers[j])

        lines = [line for job in jobs for line in job.lines]
        translator = dataclasses.replace(self.translator, settings=settings)
        nbest = translator.translate_nbest(lines, ready=ready)
        if alignment:
            maps = iter(attention_maps(translator, lines, nbest))
            answers = [
                [
                    LineResult(
                        r.hypotheses, [align(m) for m in next(maps)] or [""] * len(r.hypotheses)
                    )
                    for r in results
                ]
                for results in answers
            ]
        for job, results in zip(jobs, answers):  # those left: with alignments, or no lines
            if not job.future.done():
                job.future.set_result(results)

    def _fail_waiting(self) -> None:
        while True:
            try:
                item = self._held or self._queue.get_nowait()
            except queue.Empty:
                return
            self._held = None
            if isinstance(item, Job):
                item.future.set_exception(ShuttingDown("the server is shutting down"))
