"""wait() itself: what it returns, how it fails, which exceptions it retries."""
import itertools
import time

import pytest

from waiting import wait


def test_returns_the_first_truthy_value():
    values = iter([None, 0, "", "ready"])
    assert wait(lambda: next(values), 5, "ready", 0) == "ready"


def test_until_returns_the_value_seen():
    phases = iter(["Pending", "Starting", "Running"])
    assert wait(lambda: next(phases), 5, "Running", 0, until=lambda p: p == "Running") \
        == "Running"


def test_timeout_says_what_how_long_and_the_last_value():
    t0 = time.monotonic()
    with pytest.raises(AssertionError) as e:
        wait(lambda: "Stopped", 0.3, "vm linux-vm phase Running", 0.05,
             until=lambda p: p == "Running")
    assert str(e.value) == "vm linux-vm phase Running: not reached in 0.3 s; last: 'Stopped'"
    assert 0.3 <= time.monotonic() - t0 < 1.5


def test_tries_once_even_without_time():
    calls = []
    with pytest.raises(AssertionError, match="last: False"):
        wait(lambda: calls.append(1) or False, 0, "never", 0.05)
    assert calls == [1]


def test_ignored_exceptions_are_retried_and_shown():
    attempts = itertools.count()

    def connect():
        if next(attempts) < 3:
            raise ConnectionRefusedError(111, "Connection refused")
        return "connected"
    assert wait(connect, 5, "connect", 0, ignore=(ConnectionRefusedError,)) == "connected"

    def refused():
        raise ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(AssertionError) as e:
        wait(refused, 0.1, "connect", 0.02, ignore=(OSError,))
    assert str(e.value) == ("connect: not reached in 0.1 s; last: ConnectionRefusedError: "
                            "[Errno 111] Connection refused")
    assert isinstance(e.value.__cause__, ConnectionRefusedError)


def test_other_exceptions_propagate_at_once():
    calls = []

    def broken():
        calls.append(1)
        raise KeyError("status")
    with pytest.raises(KeyError):
        wait(broken, 5, "never", 0, ignore=(OSError,))
    assert calls == [1]


def test_sleep_is_called_with_at_most_the_interval_and_never_past_the_deadline():
    naps = []
    with pytest.raises(AssertionError):
        wait(lambda: False, 0.2, "never", 0.5, sleep=lambda s: naps.append(s) or time.sleep(s))
    assert naps and all(0 < s <= 0.2 for s in naps)
    news = iter([False, False, True])
    assert wait(lambda: next(news), 5, "news", 10, sleep=lambda s: None) is True
