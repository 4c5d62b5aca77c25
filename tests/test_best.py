"""Which checkpoints a run keeps: the best by dev BLEU, and patience."""

from __future__ import annotations

from tfcli.training.best import BestCheckpoints, update_best


def test_update_best_keeps_the_top_scores_and_names_the_dropped_steps():
    best: list[tuple[float, int]] = []
    for step, bleu in ((100, 10.0), (200, 12.0), (300, 11.0)):
        update = update_best(best, bleu, step, keep=2)
        best = update.best
    assert best == [(12.0, 200), (11.0, 300)]
    assert update.kept and not update.improved and update.dropped == [100]
    worse = update_best(best, 5.0, 400, keep=2)
    assert not worse.kept and not worse.improved and worse.dropped == [400]
    assert worse.best == best
    tie = update_best(best, 12.0, 500, keep=2)  # a tie is not an improvement; the later step first
    assert tie.best == [(12.0, 500), (12.0, 200)] and not tie.improved and tie.dropped == [300]
    assert update_best([], 0.0, 1, keep=1).improved  # the first score always improves


def test_best_checkpoints_count_validations_without_a_new_best():
    kept = BestCheckpoints(keep=2)
    assert kept.best_bleu is None and not kept.out_of_patience(1)
    kept.record(10.0, 100)
    kept.record(9.0, 200)
    kept.record(9.5, 300)
    assert kept.bad_validations == 2 and kept.out_of_patience(2) and not kept.out_of_patience(3)
    assert not kept.out_of_patience(0)  # 0: no patience limit
    assert kept.steps == [100, 300] and kept.best_bleu == 10.0
    kept.record(11.0, 400)
    assert kept.bad_validations == 0


def test_best_checkpoints_state_round_trip():
    kept = BestCheckpoints(keep=3)
    for step, bleu in ((1, 3.0), (2, 5.0), (3, 4.0)):
        kept.record(bleu, step)
    again = BestCheckpoints(keep=3)
    again.load_state_dict(kept.state_dict())
    assert again.best == kept.best and again.bad_validations == kept.bad_validations == 1
