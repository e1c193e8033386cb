"""The supervisor on real child processes, with an injected clock (no sleeping for backoff)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from driftline.collector.embedded.lifeline import die_with_parent
from driftline.collector.embedded.supervisor import Child, GiveUp, ServiceProcess, Supervisor
from tests.collector.embedded.up_testkit import alive as _alive


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def python(code: str) -> ServiceProcess:
    return ServiceProcess(subprocess.Popen([sys.executable, "-c", code]))


def settle(sup: Supervisor, name: str) -> None:
    """Wait (real time) until the child process has exited, then let the supervisor see it."""
    child = sup.get(name)
    assert child is not None and child.handle is not None
    child.handle.proc.wait(30)
    sup.tick()


def test_a_crashed_child_is_restarted_with_doubling_backoff_and_counted() -> None:
    clock, printed = Clock(), []
    starts = []

    def launch() -> ServiceProcess:
        starts.append(clock.now)
        return python("import sys; sys.exit(3)" if len(starts) < 3 else "import time; time.sleep(60)")

    sup = Supervisor(print_fn=printed.append, clock=clock, backoff_min_s=1, stable_after_s=30)
    sup.add(Child("worker", launch))
    settle(sup, "worker")
    assert "worker exited with code 3; restarting it in 1 s (restart 1)" in printed[-1]
    sup.tick()
    assert len(starts) == 1  # not before the backoff
    clock.now += 1
    sup.tick()
    assert len(starts) == 2 and sup.restarts == {"worker": 1}
    settle(sup, "worker")
    assert "restarting it in 2 s (restart 2)" in printed[-1]
    clock.now += 2
    sup.tick()
    assert len(starts) == 3 and sup.running("worker") and sup.restarts == {"worker": 2}
    sup.stop("worker")
    assert not sup.running("worker")


def test_a_child_killed_by_a_signal_is_reported_by_name() -> None:
    clock, printed = Clock(), []
    sup = Supervisor(print_fn=printed.append, clock=clock)
    child = sup.add(Child("store", lambda: python("import time; time.sleep(60)")))
    assert child.handle is not None
    child.handle.proc.send_signal(signal.SIGKILL)
    settle(sup, "store")
    assert "store exited with signal SIGKILL" in printed[-1]
    clock.now += 1
    sup.tick()
    assert sup.running("store")
    sup.stop_all([])


def test_a_crash_loop_is_given_up_on_instead_of_restarted_forever() -> None:
    clock = Clock()
    sup = Supervisor(print_fn=lambda _: None, clock=clock, max_crashes_in_a_row=3, stable_after_s=30)
    sup.add(Child("collector", lambda: python("import sys; sys.exit(2)")))
    with pytest.raises(GiveUp, match="collector exited with code 2 4 times in a row"):
        for _ in range(10):
            settle(sup, "collector")  # each run lasts no time on the clock: a crash loop
            clock.now += 100  # past any backoff
            sup.tick()


def test_a_child_that_ran_long_enough_resets_the_crash_count() -> None:
    clock = Clock()
    sup = Supervisor(print_fn=lambda _: None, clock=clock, max_crashes_in_a_row=2, stable_after_s=30)
    sup.add(Child("dashboard", lambda: python("import sys; sys.exit(1)")))
    for _ in range(6):  # each run "lasted" 31 s: never a loop
        clock.now += 31
        settle(sup, "dashboard")
        assert sup.get("dashboard").crashes_in_a_row == 1  # type: ignore[union-attr]
        clock.now += 1
        sup.tick()
    sup.stop_all([])


def test_a_job_that_finishes_is_not_restarted_but_one_that_fails_is() -> None:
    clock, printed = Clock(), []
    sup = Supervisor(print_fn=printed.append, clock=clock)
    sup.add(Child("demo", lambda: python("pass"), restart="on_failure"))
    settle(sup, "demo")
    clock.now += 100
    sup.tick()
    assert printed == ["driftline: demo finished"] and not sup.running("demo") and sup.restarts == {}
    sup.add(Child("demo2", lambda: python("raise SystemExit(1)"), restart="on_failure"))
    settle(sup, "demo2")
    assert "demo2 exited with code 1; restarting" in printed[-1]


def test_a_failed_restart_is_retried_with_backoff() -> None:
    clock, printed = Clock(), []
    attempts = []

    def launch() -> ServiceProcess:
        attempts.append(1)
        if len(attempts) == 1:
            return python("import sys; sys.exit(1)")
        if len(attempts) == 2:
            raise RuntimeError("port 8123 still in use")
        return python("import time; time.sleep(60)")

    sup = Supervisor(print_fn=printed.append, clock=clock, backoff_min_s=1)
    sup.add(Child("store", launch))
    settle(sup, "store")
    clock.now += 1
    sup.tick()
    assert "store did not start (port 8123 still in use); trying again in 2 s" in printed[-1]
    clock.now += 2
    sup.tick()
    assert sup.running("store") and len(attempts) == 3
    sup.stop_all([])


def test_a_child_dies_with_its_parent_even_when_the_parent_is_sigkilled() -> None:
    """The lifeline: a parent that starts a sleeping child with die_with_parent, then is SIGKILLed."""
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from driftline.collector.embedded.lifeline import die_with_parent\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], preexec_fn=die_with_parent())\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child_pid):
        time.sleep(0.05)
    assert not _alive(child_pid)
    assert die_with_parent() is not None



def test_a_child_whose_clean_stop_hangs_is_gone_within_the_lifeline_grace() -> None:
    """The parent dies; the child's clean stop (here: SIGTERM ignored, a hung stop) never ends; the
    lifeline watcher ends the child grace_s later. Its own child does not inherit the lifeline."""
    child_code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "from driftline.collector.embedded.lifeline import LIFELINE_ENV, keep_lifeline\n"
        "assert keep_lifeline() is not None\n"
        "grand = subprocess.Popen([sys.executable, '-c', 'import os, time; time.sleep(60)'])\n"
        "print(os.getpid(), grand.pid, LIFELINE_ENV in os.environ, flush=True)\n"
        "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time\n"
        "from driftline.collector.embedded.lifeline import die_with_parent, lifeline_env\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child_code!r}], env={{**os.environ, **lifeline_env(1.0)}},\n"
        "                     preexec_fn=die_with_parent())\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child, grandchild, inherited = parent.stdout.readline().split()
    assert inherited == "False"
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    t0 = time.monotonic()
    time.sleep(0.5)
    assert _alive(int(child)), "the child ignores SIGTERM: only the watcher, grace_s later, ends it"
    while time.monotonic() - t0 < 5 and _alive(int(child)):
        time.sleep(0.05)
    assert not _alive(int(child))
    assert _alive(int(grandchild)), "the lifeline is the child's, not its children's"
    os.kill(int(grandchild), signal.SIGKILL)


def test_a_missing_or_malformed_lifeline_is_no_lifeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from driftline.collector.embedded.lifeline import LIFELINE_ENV, keep_lifeline

    monkeypatch.delenv(LIFELINE_ENV, raising=False)
    assert keep_lifeline() is None
    monkeypatch.setenv(LIFELINE_ENV, "not-a-pid")
    assert keep_lifeline() is None


def test_a_crash_says_what_the_child_wrote_last(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock, printed = Clock(), []
    log = tmp_path / "collector.log"
    log.write_text("INFO earlier run\n" + "x" * 5000 + "\n")
    code = (f"import sys; f = open({str(log)!r}, 'a'); f.write('Traceback (most recent call last):\\n'); "
            "f.write('OSError: [Errno 98] Address already in use\\n\\n'); f.close(); sys.exit(1)")
    sup = Supervisor(print_fn=printed.append, clock=clock, max_crashes_in_a_row=1)
    sup.add(Child("collector", lambda: python(code), log_path=log))
    settle(sup, "collector")
    assert printed[-1].endswith(f"see {log} (it ends: OSError: [Errno 98] Address already in use)"), printed
    clock.now += 100
    sup.tick()
    with pytest.raises(GiveUp, match=r"not restarting it; see .* \(it ends: OSError: \[Errno 98\]"):
        settle(sup, "collector")


def test_a_crash_that_wrote_nothing_quotes_no_earlier_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock, printed = Clock(), []
    log = tmp_path / "broker.log"
    log.write_text("WARN a line of an earlier run\n")
    sup = Supervisor(print_fn=printed.append, clock=clock)
    sup.add(Child("broker", lambda: python("import sys; sys.exit(1)"), log_path=log))
    settle(sup, "broker")
    assert printed[-1].endswith(f"see {log}") and "earlier run" not in printed[-1], printed
    sup.stop_all([])
