"""``driftline up`` keeps every acknowledged event: real processes, real signals, the real Tansu
broker and chDB store. Each test counts what arrived (every event id sent is stored once)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from driftline.collector.embedded.broker import free_port, port_open
from tests.collector.embedded.up_testkit import Up, client, send, stored, stored_offline
from tests.collector.embedded.up_testkit import alive as _alive
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def _model(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:6]}"


RULES = """
version: 1
interval_s: 1
allow_local_development: true
channels:
  hook: {type: webhook, url: "http://127.0.0.1:9/hook", secret: s3cret}
rules:
  - {name: drift, kind: drift, model: "*", statistic: psi, op: ">", threshold: 0.2, channels: [hook]}
"""


def test_sigterm_right_after_flush_stores_every_event_once_and_state_stays_in_the_data_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    up = Up(tmp_path / "data", "--alert-rules", str(rules), env={"HOME": str(home)}).wait_up()
    model = _model("sigterm")
    try:
        ids = send(up.bootstrap, model, 30_000)
        assert up.stop(signal.SIGTERM) == 0, up.output  # immediately: most events are still in the broker
    finally:
        up.kill_all()
    assert "driftline: stopped" in up.output and "dropped" not in up.output
    assert len(ids) == 30_000
    assert stored_offline(tmp_path / "data", model) == (30_000, 30_000)
    # Everything the stack owns is under its data dir: the alerting outbox too, nothing in ~.
    assert (tmp_path / "data" / "alerting" / "alerting.sqlite3").is_file()
    assert not (home / ".driftline").exists()
    # Started again on the same data dir: every event is there, once.
    again = Up(tmp_path / "data").wait_up()
    try:
        assert stored(again.clickhouse_url, model) == (30_000, 30_000)
    finally:
        assert again.stop() == 0


def test_ctrl_c_from_the_terminal_stores_every_event_once(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", sigint="default").wait_up()
    model = _model("sigint")
    try:
        send(up.bootstrap, model, 30_000)
        os.killpg(up.proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        assert up.proc.wait(180) == 0, up.output
    finally:
        up.kill_all()
    assert stored_offline(tmp_path / "data", model) == (30_000, 30_000)


def test_sigint_inherited_ignored_is_respected_and_sigterm_stops(tmp_path: Path) -> None:
    """A background job of a shell script inherits SIGINT ignored; `up` keeps that convention."""
    up = Up(tmp_path / "data", sigint="ignore").wait_up()
    try:
        up.proc.send_signal(signal.SIGINT)
        time.sleep(3)
        assert up.proc.poll() is None and "stopping" not in up.output
        assert up.stop(signal.SIGTERM) == 0
    finally:
        up.kill_all()


def test_children_killed_mid_stream_are_restarted_and_every_event_is_stored_once(tmp_path: Path) -> None:
    # The rollup audit every 5 s: rows stored by an insert the killed store cut short must still
    # reach the dashboard's rollups (or be reported missing, which fails the test below). Every
    # other event is dated two hours back: that closed hour is rolled into the feature rollup (every
    # second, as soon as closed) and rolled again as its events keep coming, through the kills.
    up = Up(tmp_path / "data", dashboard=True, env={"DRIFTLINE_ROLLUP_AUDIT_S": "5", "DRIFTLINE_FEATURE_ROLL_S": "1",
                                                    "DRIFTLINE_FEATURE_ROLL_AFTER_S": "0"}).wait_up()
    model = _model("kill9")
    dashboard = f"http://127.0.0.1:{up.ports['dashboard']}/healthz"
    faults = iter(["store", "collector", "dashboard"])

    def kill_next(i: int) -> None:
        if i % 10_000 != 9_999:
            return
        name = next(faults, None)
        if name is None:
            return
        mark = len(up.lines)
        os.kill(up.children()[name], signal.SIGKILL)
        up.wait_printed(f"driftline: {name} restarted", timeout_s=90, after=mark)

    try:
        wait_for(lambda: _http_ok(dashboard), timeout_s=90)
        ids = send(up.bootstrap, up_model := model, 40_000, rate_per_s=2_000, during=kill_next,
                   back_s=lambda i: 0.0 if i % 2 else 7200.0)
        assert len(ids) == 40_000
        past_hour = int((time.time() - 7200) // 3600 * 3600)  # every dated event's hour is this or before
        wait_for(lambda: stored(up.clickhouse_url, up_model)[0] >= 40_000, timeout_s=180)
        time.sleep(2)  # a duplicate written late would show now
        assert stored(up.clickhouse_url, model) == (40_000, 40_000)
        wait_for(lambda: _http_ok(dashboard), timeout_s=90)  # the restarted dashboard serves again
        # Two audits after the last event was stored, and no rollup misses a row.
        audits = _metric(up.ports["metrics"], "driftline_rollup_audits_total", 'outcome="ok"')
        wait_for(lambda: (_metric(up.ports["metrics"], "driftline_rollup_audits_total", 'outcome="ok"') or 0)
                 >= (audits or 0) + 2, timeout_s=120)
        short = _metric(up.ports["metrics"], "driftline_rollup_rows_missing", "")
        assert short == 0.0, up.output
        # The closed hour's feature values all in its latest roll (two an event), none counted twice.
        db = client(up.clickhouse_url)
        rolled = ("SELECT sum(n) FROM driftline.rollup_feature_rolls FINAL WHERE model = {m:String} "
                  "AND hour <= toDateTime({h:UInt32}, 'UTC')")
        wait_for(lambda: db.query(rolled, parameters={"m": model, "h": past_hour}).result_rows[0][0] == 40_000,
                 timeout_s=60)
        check = subprocess.run([sys.executable, "-m", "driftline.cli", "rollups", "check", "--clickhouse-url",
                                up.clickhouse_url], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0 and "consistent" in check.stdout, check.stdout + check.stderr
        for name in ("store", "collector", "dashboard"):
            assert f"driftline: {name} exited with signal SIGKILL" in up.output
        assert up.stop() == 0, up.output
    finally:
        up.kill_all()
    # Each child was restarted at least once; on a loaded machine the collector may also exit once
    # more (its store retries ran out while the killed store came back) and be restarted: the
    # outcome that counts, every event stored once, is checked above.
    said = re.search(r"restarts: (.*)", up.output)
    assert said, up.output
    counts = {name: int(n) for name, n in re.findall(r"(\w+) (\d+)", said.group(1))}
    assert counts.get("store", 0) >= 1 and counts.get("collector", 0) >= 1 and counts.get("dashboard", 0) >= 1


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_sigkill_of_up_leaves_no_child_and_frees_the_ports(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", dashboard=True).wait_up()
    children: dict[str, int] = {}
    try:
        children = wait_for(lambda: c if len(c := up.children()) == 4 else None, timeout_s=30)
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(10)
        # The bound: within 5 s no child is alive (lifeline.LIFELINE_GRACE_S cuts a slow
        # clean stop short), and the ports are free.
        deadline = time.monotonic() + 5
        while (lingering := [n for n, pid in children.items() if _alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lingering == [], f"children outlived up by 5 s: {lingering}"
        while (held := [p for p in up.ports.values() if port_open("127.0.0.1", p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held == [], f"ports still held after up and its children died: {held}"
    finally:
        up.kill_all()
        for pid in children.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    again = Up(tmp_path / "data", dashboard=True, ports=up.ports).wait_up()
    assert again.stop() == 0, again.output


def test_a_stop_the_collector_cannot_finish_waits_and_says_how_much_is_left(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", "--drain-timeout-s", "2").wait_up()
    model = _model("stuck")
    try:
        collector = up.children()["collector"]
        os.kill(collector, signal.SIGSTOP)  # the collector stops storing
        send(up.bootstrap, model, 5_000)
        up.proc.send_signal(signal.SIGTERM)
        up.wait_printed("still only in the embedded broker; waiting", timeout_s=60)
        left = int(up.output.split(" events (")[0].rsplit("driftline: ", 1)[1])
        assert left == 5_000  # nothing was stored: every event sent is still in the broker
        assert up.proc.poll() is None  # it keeps the records, and waits
        os.kill(collector, signal.SIGCONT)
        assert up.proc.wait(180) == 0, up.output
    finally:
        up.kill_all()
    assert "dropped" not in up.output
    assert stored_offline(tmp_path / "data", model) == (5_000, 5_000)


def test_force_stops_after_the_timeout_and_counts_what_it_dropped(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", "--drain-timeout-s", "2", "--force").wait_up()
    model = _model("force")
    try:
        collector = up.children()["collector"]
        os.kill(collector, signal.SIGSTOP)
        send(up.bootstrap, model, 3_000)
        up.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        os.kill(collector, signal.SIGCONT)  # too late to matter much; the count must still be exact
        code = up.proc.wait(180)
        up._reader.join(10)
    finally:
        up.kill_all()
    assert code == 1, up.output
    line = next(ln for ln in up.lines if "they are dropped" in ln)
    dropped = int(line.split("stopping with ")[1].split(" events")[0])
    rows, unique = stored_offline(tmp_path / "data", model)
    # A chunk stored but not yet committed counts as both; nothing is lost without being counted.
    assert rows == unique and rows + dropped >= 3_000 and dropped > 0


def _metric(metrics_port: int, name: str, labels: str) -> float | None:
    """The sum of the collector's ``name`` series whose labels contain ``labels`` (None while its
    /metrics cannot be read or has no such series)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
              if ln.startswith(name + "{") and labels in ln.split("}")[0] or ln.startswith(name + " ")]
    return sum(values) if values else None


def _stop_while_the_detectors_wait(tmp_path: Path, tag: str, fault: Callable[[Any], None],
                                   waiting: Callable[[int], bool], says: str) -> str:
    """`up` with the detectors' bounds shortened (30 s, 3 s of state retries); ``fault`` on the
    store; 2,000 events stored; ``waiting`` true of the collector's metrics port. Then SIGTERM:
    ``says`` is printed, not "waiting for the collector to store them"; up stays while the records
    are uncommitted, and ends by itself (exit 0) once DRIFTLINE_DETECTOR_HELD_ACK_AFTER_S passes,
    with every event stored once. Returns the collector's log."""
    from driftline.collector.store import connect

    up = Up(tmp_path / "data", "--drain-timeout-s", "1", env={"DRIFTLINE_DETECTOR_HELD_ACK_AFTER_S": "30",
                                                                 "DRIFTLINE_DETECTOR_STATE_RETRY_S": "3"}).wait_up()
    model = _model(tag)
    try:
        fault(connect(up.clickhouse_url))
        send(up.bootstrap, model, 2_000)
        wait_for(lambda: stored(up.clickhouse_url, model)[0] == 2_000, timeout_s=60)
        wait_for(lambda: waiting(up.ports["metrics"]), timeout_s=120)
        mark = len(up.lines)
        up.proc.send_signal(signal.SIGTERM)
        up.wait_printed(says, timeout_s=40, after=mark)
        assert up.proc.poll() is None  # the records are not committed: up keeps the broker up
        code = up.proc.wait(120)
        up._reader.join(10)
    finally:
        up.kill_all()
    assert code == 0, up.output
    assert "still only in the embedded broker; waiting" not in up.output, up.output
    assert "they are dropped" not in up.output, up.output
    assert stored_offline(tmp_path / "data", model) == (2_000, 2_000)
    return (tmp_path / "data" / "logs" / "collector.log").read_text(errors="replace")


def test_a_stop_while_the_detectors_hold_stored_events_says_so_and_ends_when_commits_resume(tmp_path: Path) -> None:
    """The detector state's table is away: the events are stored, the detectors hold them and the
    collector commits nothing. The stop says so."""
    from driftline.collector.store.tables import DATABASE

    def away(ch: Any) -> None:
        # A stand-in without the state's columns rather than no table: a child starting meanwhile
        # (migrate creates what is missing) would give the collector an empty, readable one.
        ch.command(f"RENAME TABLE {DATABASE}.detector_state TO {DATABASE}.detector_state_away")
        ch.command(f"CREATE TABLE {DATABASE}.detector_state (model String) ENGINE = Memory")

    # the first load of the new model's state fails after its 3 s of retries: then it is held
    log = _stop_while_the_detectors_wait(
        tmp_path, "held", away, lambda port: _metric(port, "driftline_detector_events_held", "") == 2_000,
        "the collector's detectors hold 2000 stored events because their models' saved state cannot be read")
    # the setting reached the collector through up's settings file
    assert "2000 stored events held for the detectors for over 30s" in log, log[-3000:]
    assert "2000 stored events given up by the detectors" in log, log[-3000:]


def test_a_stop_while_the_store_refuses_the_detectors_output_says_so_and_ends_when_commits_resume(
        tmp_path: Path) -> None:
    """The store takes the events but refuses the detectors' saved state (a CHECK that fails every
    insert): the records stay uncommitted while their observed state is unsaved. The stop says so."""
    from driftline.collector.store.tables import DATABASE

    log = _stop_while_the_detectors_wait(
        tmp_path, "unwritten",
        lambda ch: ch.command(f"ALTER TABLE {DATABASE}.detector_state ADD CONSTRAINT refused CHECK 0"),
        lambda port: (_metric(port, "driftline_detector_output_unwritten_seconds", "") or 0) > 0,
        "not acknowledged yet: the store has refused the collector's detector output (drift rows, state) for")
    assert "the detectors' output could not be written" in log, log[-3000:]
    assert "could not be written for over 30s: Kafka offsets are committed now" in log, log[-3000:]


def test_a_crashed_broker_is_restarted_with_its_topics(tmp_path: Path) -> None:
    up = Up(tmp_path / "data").wait_up()
    model = _model("broker")
    try:
        send(up.bootstrap, model, 1_000)
        wait_for(lambda: stored(up.clickhouse_url, model)[0] == 1_000, timeout_s=60)
        mark = len(up.lines)
        os.kill(up.children()["broker"], signal.SIGKILL)
        up.wait_printed("the embedded broker was restarted with its topics", timeout_s=60, after=mark)
        # A sample taken every 5 s: an upper bound of what the broker held uncommitted, here at
        # most the 1,000 events' records (all stored; the collector may not have committed yet).
        report = "".join(up.lines[mark:]).split("it may have held ")[1]
        assert report.startswith("an unknown number of") or 0 <= int(report.split()[2]) <= 1_000
        send(up.bootstrap, model, 2_000)
        wait_for(lambda: stored(up.clickhouse_url, model)[0] >= 3_000, timeout_s=120)
        assert stored(up.clickhouse_url, model) == (3_000, 3_000)
        assert up.stop() == 0, up.output
    finally:
        up.kill_all()


def test_every_collector_setting_reaches_the_collector(tmp_path: Path) -> None:
    detectors = tmp_path / "detectors.yaml"
    detectors.write_text("model: '*'\nmin_samples: 50\n")
    pii = tmp_path / "pii.yaml"
    pii.write_text("pii:\n  default_policy: scrub\n")
    key = tmp_path / "key"
    key.write_text("k" * 32)
    up = Up(tmp_path / "data", "--batch-size", "1234", "--batch-timeout-s", "0.7", "--group-id", "g-custom",
            "--partitions", "3", "--detectors-config", str(detectors), "--pii-config", str(pii),
            "--pii-key-file", str(key), env={"DRIFTLINE_SESSION_TIMEOUT_S": "12", "DRIFTLINE_TOPIC_PREFIX": "acme"})
    try:
        up.wait_up()
        metrics = f"http://127.0.0.1:{up.ports['metrics']}/metrics"
        info = wait_for(lambda: _settings_info(metrics), timeout_s=60)
        assert info["batch_size"] == "1234" and info["batch_timeout_s"] == "0.7"
        assert info["group_id"] == "g-custom" and info["partitions"] == "3"
        assert info["session_timeout_s"] == "12.0"
        assert info["detectors_config"] == str(detectors) and info["pii_config"] == str(pii)
        assert info["pii_key_file"] == str(key)
        assert info["data_dir"] == str((tmp_path / "data").resolve())
        assert info["topics"].startswith("acme.predictions,")
        model = _model("settings")
        from driftline.sdk import Monitor
        from driftline.sdk.config import SdkSettings

        mon = Monitor(model=model, settings=SdkSettings.from_env(env={"DRIFTLINE_KAFKA_BOOTSTRAP": up.bootstrap,
                                                                   "DRIFTLINE_TOPIC_PREFIX": "acme"}))
        mon.log(features={"x": 1.0}, prediction=1)
        assert mon.flush(timeout_s=30)
        mon.close()
        wait_for(lambda: stored(up.clickhouse_url, model)[0] == 1, timeout_s=60)
        assert up.stop() == 0, up.output
    finally:
        up.kill_all()


def _settings_info(url: str) -> dict[str, str] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("driftline_collector_settings_info{")), None)
    if line is None:
        return None
    body = line[line.index("{") + 1:line.rindex("}")]
    return dict((k, v.strip('"')) for k, v in (item.split("=", 1) for item in body.split('",')))


def test_the_broker_is_emptied_under_traffic_and_every_event_is_stored_once(tmp_path: Path) -> None:
    """Bounded broker memory: with a 1 MiB limit, up empties Tansu's topics whenever they hold
    records the collector has stored and committed, while the SDK keeps sending."""
    up = Up(tmp_path / "data", "--broker-max-mib", "1", "--broker-check-s", "2").wait_up()
    model = _model("rotate")
    try:
        for _ in range(3):
            send(up.bootstrap, model, 10_000, rate_per_s=5_000)
            wait_for(lambda: "emptied the embedded broker's topics (" in up.output, timeout_s=120)
        wait_for(lambda: stored(up.clickhouse_url, model)[0] >= 30_000, timeout_s=180)
        freed = [int(ln.split("topics (")[1].split()[0]) for ln in up.lines if "emptied the embedded" in ln]
        assert freed and all(n > 0 for n in freed)
        send(up.bootstrap, model, 5_000)  # and a stop right after, as in the first test
        assert up.stop() == 0, up.output
    finally:
        up.kill_all()
    assert stored_offline(tmp_path / "data", model) == (35_000, 35_000)
