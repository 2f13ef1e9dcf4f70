"""The one way the tests, the benchmarks and the demo wait for something to happen.

    vm = wait(lambda: d.vm("web"), 60, "vm web phase Running", 0.1,
              until=lambda vm: vm and vm["status"]["phase"] == "Running")

fails, if the VM is not Running within 60 s, with
"vm web phase Running: not reached in 60 s; last: {... the VM as last read ...}".

It lives beside the integration tests' other helpers (daemon.py, qmp.py, vmrun.py), which
use it themselves; tests/bench/*.py and tests/demo.py already put this directory on
sys.path to import those.
"""
import time


def wait(predicate, timeout, what, interval=0.05, *, until=None, ignore=(),
         sleep=time.sleep):
    """Calls predicate() until its value is truthy (or, given until, until(value) is)
    and returns that value. Tries at once, then every interval seconds for timeout
    seconds; then raises AssertionError saying what was awaited, for how long, and the
    last value predicate returned or the last exception it raised.

    until: separates what is looked at from the condition, so that a timeout shows the
    value seen ("Stopped") rather than False.
    ignore: exception types that mean "not yet" (e.g. ConnectionRefusedError): retried,
    and the last one is shown and chained on timeout. Any other exception propagates.
    sleep: what happens between tries, called with at most interval seconds (never
    past the deadline). time.sleep by default; a call that returns as soon as there is
    news (a select on a console, a Condition's wait, a socket read) makes the wait
    event-driven: it reacts to the news, not at the next tick.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore as e:
            last = e
        else:
            if until(value) if until else value:
                return value
            last = value
        left = deadline - time.monotonic()
        if left <= 0:
            if isinstance(last, BaseException):
                raise AssertionError(f"{what}: not reached in {timeout:g} s; last: "
                                     f"{type(last).__name__}: {last}") from last
            raise AssertionError(f"{what}: not reached in {timeout:g} s; last: {last!r}")
        sleep(min(interval, left))
