"""The pure scheduling rules: jitter bounds, the backoff table, the flap guard's counting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.flap import FlapGuard, FlapPolicy
from controller.schedule import Backoff, BackoffPolicy, jittered
from desired import ServiceKey

KEY = ServiceKey(project="p", region="r", name="svc")


@given(st.floats(1, 3600), st.floats(0, 0.5), st.floats(0, 1, exclude_max=True))
def test_a_jittered_interval_is_never_shorter_and_at_most_the_jitter_longer(
    interval: float, jitter: float, draw: float
) -> None:
    wait = jittered(interval, jitter, draw)
    assert interval <= wait <= interval * (1 + jitter) + 1e-9


def test_a_draw_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        jittered(30, 0.1, 1.0)


@pytest.mark.parametrize(
    ("failures", "permanent", "delay"),
    [(0, False, 0.0), (1, False, 2.0), (2, False, 6.0), (3, False, 18.0), (5, False, 162.0),
     (6, False, 300.0), (40, False, 300.0), (1, True, 300.0), (3, True, 300.0)],
)  # fmt: skip
def test_the_backoff_table(failures: int, permanent: bool, delay: float) -> None:
    assert BackoffPolicy().delay(failures, permanent=permanent) == delay


def test_backoff_state_counts_failures_and_waits_until_its_retry_time() -> None:
    state = Backoff().failed(BackoffPolicy(), 100.0, permanent=False, reason="UNAVAILABLE")
    state = state.failed(BackoffPolicy(), 102.0, permanent=False, reason="UNAVAILABLE")
    assert (state.failures, state.retry_at) == (2, 108.0)
    assert state.waiting(107.9) and not state.waiting(108.0)
    assert not Backoff().waiting(0.0)


def test_the_guard_holds_at_the_limit_within_the_window_only() -> None:
    guard = FlapGuard(FlapPolicy(limit=3, window=100.0))
    assert guard.reverted(KEY, "f", "bob", 0.0) is None
    assert guard.reverted(KEY, "f", "bob", 50.0) is None
    assert guard.reverted(KEY, "f", "bob", 101.0) is None  # the first revert left the window
    hold = guard.reverted(KEY, "f", "bob", 120.0)
    assert hold is not None and hold.reverts == 3 and hold.writer == "bob"
    assert set(guard.held(KEY)) == {"f"}
    assert guard.reverted(KEY, "other", "bob", 120.0) is None  # counted per field


def test_a_hold_ends_when_the_value_is_given_back_after_a_held_change() -> None:
    guard = FlapGuard(FlapPolicy(limit=1, window=100.0))
    guard.reverted(KEY, "f", "bob", 0.0)
    assert guard.observe(KEY, {}, 1.0) == []  # in sync right after the last revert: still held
    assert guard.observe(KEY, {"f": "v2"}, 2.0) == []  # changed again: contested, kept
    assert guard.held(KEY)["f"].contested
    ended = guard.observe(KEY, {}, 3.0)  # they put it back
    assert [hold.path for hold in ended] == ["f"] and guard.held(KEY) == {}


def test_a_hold_expires_a_window_after_the_last_change_it_saw() -> None:
    guard = FlapGuard(FlapPolicy(limit=1, window=100.0))
    guard.reverted(KEY, "f", "bob", 0.0)
    guard.observe(KEY, {"f": "v2"}, 50.0)
    assert guard.expire(149.0) == []
    assert [(key, hold.path) for key, hold in guard.expire(150.0)] == [(KEY, "f")]


def test_releasing_a_service_forgets_its_holds_and_counts() -> None:
    guard = FlapGuard(FlapPolicy(limit=2, window=100.0))
    guard.reverted(KEY, "f", "bob", 0.0)
    assert guard.release(KEY) == []
    assert guard.reverted(KEY, "f", "bob", 1.0) is None  # the count started again
