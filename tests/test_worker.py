"""The serving worker on its own: batches within the token budget, every job answered."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from tfcli.model.kernels import on_own_thread
from tfcli.serving.worker import BatchWorker, Job, ShuttingDown
from tfcli.translation.translator import load_translator


@pytest.fixture
def translator(memorized_run):
    return load_translator(memorized_run)


def _texts(job: Job) -> list[str]:
    return [r.hypotheses[0].text if r.hypotheses else "" for r in job.future.result(timeout=60)]


def test_jobs_waiting_together_are_one_batch_and_get_their_own_lines(translator, overfit):
    worker = BatchWorker(translator, wait_s=0.0, max_requests=64)
    jobs = [
        Job([s, "", overfit.sources[(n + 1) % 4]], translator.settings)
        for n, s in enumerate(overfit.sources)
    ]
    for job in jobs:
        worker.submit(job)  # all waiting before the worker starts
    worker.start()
    for n, job in enumerate(jobs):
        assert _texts(job) == [overfit.translations[n], "", overfit.translations[(n + 1) % 4]]
    worker.stop()
    assert (worker.requests, worker.batches) == (4, 1)


def test_the_token_budget_cuts_batches(translator, overfit):
    small = dataclasses.replace(
        translator, settings=dataclasses.replace(translator.settings, batch_tokens=16)
    )
    worker = BatchWorker(small, wait_s=0.0, max_requests=64)
    jobs = [Job([s], small.settings) for s in overfit.sources]  # about 9 tokens each
    for job in jobs:
        worker.submit(job)
    worker.start()
    assert [_texts(job)[0] for job in jobs] == overfit.translations
    worker.stop()
    assert (worker.requests, worker.batches) == (4, 4)


def test_a_job_given_up_is_skipped_and_the_others_answered(translator, overfit):
    worker = BatchWorker(translator, wait_s=0.0, max_requests=64)
    jobs = [Job([s], translator.settings) for s in overfit.sources[:3]]
    for job in jobs:
        worker.submit(job)
    jobs[1].future.cancel()  # as when the client's connection closes
    worker.start()
    assert (
        _texts(jobs[0]) == overfit.translations[:1] and _texts(jobs[2]) == overfit.translations[2:3]
    )
    worker.stop()
    assert worker.requests == 2


def test_jobs_still_waiting_at_the_stop_fail_and_new_ones_are_refused(translator, overfit):
    worker = BatchWorker(translator, wait_s=0.0, max_requests=1)
    jobs = [Job([s], translator.settings) for s in overfit.sources[:2]]
    for job in jobs:
        worker.submit(job)
    worker.stop()
    for job in jobs:
        with pytest.raises(ShuttingDown):
            job.future.result(timeout=60)
    with pytest.raises(ShuttingDown):
        worker.submit(Job([overfit.sources[0]], translator.settings))


_POOLS = """
import os, time, torch
from tfcli.model.kernels import on_own_thread
torch.set_num_threads(2)
x = torch.randn(256, 4096)
tasks = lambda: len(os.listdir("/proc/self/task"))
before = tasks()
on_own_thread(lambda: torch.softmax(x, -1))  # a parallel operation, on a thread that ends
deadline = time.monotonic() + 10
while tasks() != before and time.monotonic() < deadline:  # the pool's threads end on their own
    time.sleep(0.05)
after_own = tasks()
torch.softmax(x, -1)  # the same on the main thread, which lives on with its pool
print(before, after_own, tasks())
"""


@pytest.mark.skipif(
    not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2,
    reason="counts OpenMP threads through /proc, with 2 cores or more",
)
def test_work_on_its_own_thread_leaves_no_openmp_pool_behind():
    """Loading the model this way leaves the serving worker the only pool (kernels.py)."""
    out = subprocess.run(
        [sys.executable, "-c", _POOLS], capture_output=True, text=True, check=True
    ).stdout
    before, after_own, after_main = map(int, out.split())
    assert after_own == before
    assert after_main > before  # the operation does start a pool, so the first check counts


def test_work_on_its_own_thread_passes_its_result_and_its_error():
    assert on_own_thread(lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        on_own_thread(lambda: 1 / 0)


def test_a_short_line_is_answered_before_the_long_line_of_its_batch_ends(translator, overfit):
    short, long = overfit.sources[0], " ".join(overfit.sources * 3)
    expected = translator.translate([long])
    worker = BatchWorker(translator, wait_s=0.0, max_requests=64)
    answered: list[str] = []
    jobs = {}
    for name, line in (("long", long), ("short", short)):  # the long one first in the batch
        jobs[name] = Job([line], translator.settings)
        jobs[name].future.add_done_callback(lambda _, name=name: answered.append(name))
        worker.submit(jobs[name])
    worker.start()
    assert _texts(jobs["long"]) == expected
    assert _texts(jobs["short"]) == [overfit.translations[0]]
    worker.stop()
    assert worker.batches == 1
    assert answered == ["short", "long"]
