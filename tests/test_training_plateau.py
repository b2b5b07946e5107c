"""Reduce-on-plateau and early-stopping rules (pure Python, spec A.6 semantics)."""
import math

import pytest

from tfmusic.training.plateau import EarlyStopping, ReduceOnPlateau


def test_plateau_reduces_after_patience_then_cools_down():
    p = ReduceOnPlateau(factor=0.5, patience=2, cooldown=1)
    lr = 1.0
    decisions = []
    for value in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        new = p.update(value, lr)
        decisions.append(new)
        if new is not None:
            lr = new
    # round 1 sets best; bad rounds 2,3 (count 1,2) stay within patience; round 4 exceeds it.
    # Then one cooldown round (count held at 0), then three more bad rounds before the next cut.
    assert decisions == [None, None, None, 0.5, None, None, None, 0.25]
    assert p.reductions == 2


def test_plateau_improvement_resets_and_min_lr_floor():
    p = ReduceOnPlateau(factor=0.1, patience=0, cooldown=0, min_lr=0.05)
    assert p.update(5.0, 1.0) is None          # first value is an improvement
    assert p.update(4.0, 1.0) is None          # improvement
    assert p.update(4.0, 1.0) == pytest.approx(0.1)  # one bad round > patience 0
    assert p.update(4.0, 0.1) == pytest.approx(0.05)  # floored at min_lr
    assert p.update(4.0, 0.05) is None         # already at the floor: nothing to do


def test_plateau_min_delta_and_nan():
    p = ReduceOnPlateau(factor=0.5, patience=0, cooldown=0, min_delta=0.1)
    assert p.update(1.0, 1.0) is None
    assert p.update(0.95, 1.0) == 0.5          # not better by more than min_delta
    assert p.update(float("nan"), 0.5) == 0.25  # NaN never improves
    assert p.best == 1.0


def test_plateau_disabled_and_state_round_trip():
    p = ReduceOnPlateau(patience=None)
    assert all(p.update(1.0, 1.0) is None for _ in range(10))
    q = ReduceOnPlateau(factor=0.5, patience=1, cooldown=3)
    for v in (3.0, 3.0, 3.0):
        q.update(v, 1.0)
    r = ReduceOnPlateau(factor=0.5, patience=1, cooldown=3)
    r.load_state_dict(q.state_dict())
    assert r.state_dict() == q.state_dict()
    assert [r.update(3.0, 1.0) for _ in range(5)] == [q.update(3.0, 1.0) for _ in range(5)]
    with pytest.raises(ValueError):
        ReduceOnPlateau(factor=1.5)


def test_early_stopping():
    e = EarlyStopping(patience=2)
    assert e.update(3.0, step=10) is False and e.improved and e.best_step == 10
    assert e.update(2.0, step=20) is False and e.best_step == 20
    assert e.update(2.5, step=30) is False and not e.improved
    assert e.update(2.0, step=40) is True      # two rounds in a row without improvement
    f = EarlyStopping(patience=2)
    f.load_state_dict(e.state_dict())
    assert f.best == 2.0 and f.best_step == 20 and f.num_bad == 2
    assert EarlyStopping(patience=None).update(math.nan) is False
