"""Shared fixtures: the real embedded engines (Tansu broker, chDB store) and the collector.

Every server binds 127.0.0.1 on a free port, so several test runs can share a machine.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]


class SwallowedErrors(logging.Handler):
    """STYLE point 2: the SDK catches its own bugs and logs them; tests must still see them.

    Every record at ERROR or above from ``driftline.sdk`` counts, whether it carries a traceback
    (``logger.exception``) or only a message (``logger.error("...: %s", exc)``): a swallowed error
    is one the SDK logged as an error, however it chose to format it.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def check(self) -> None:
        """Raise ``AssertionError`` for the first swallowed error, chained to its exception if any."""
        if not self.records:
            return
        record = self.records[0]
        cause = record.exc_info[1] if record.exc_info else None
        raise AssertionError(f"the SDK swallowed an error ({len(self.records)} in all): "
                             f"{record.name}: {record.getMessage()}") from cause


@pytest.fixture(autouse=True)
def reraise_swallowed_sdk_errors(request: pytest.FixtureRequest) -> Iterator[SwallowedErrors]:
    """Fail the test if the SDK logged an error. A test that provokes one on purpose (a bad split
    file, a model that fails to load) asserts on it and then clears ``records``."""
    handler = SwallowedErrors()
    sdk_logger = logging.getLogger("driftline.sdk")
    sdk_logger.addHandler(handler)
    try:
        yield handler
    finally:
        sdk_logger.removeHandler(handler)
    handler.check()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from driftline.collector.embedded.broker import start_broker

    with start_broker(log_path=tmp_path_factory.mktemp("broker") / "broker.log") as b:
        yield b


@pytest.fixture(scope="session")
def kafka_bootstrap(broker: Any) -> str:
    return str(broker.bootstrap)


@pytest.fixture(scope="session")
def chstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from driftline.collector.embedded.chstore import start_chstore

    with start_chstore(tmp_path_factory.mktemp("chstore")) as store:
        yield store


@pytest.fixture(scope="session")
def clickhouse_url(chstore: Any) -> str:
    return str(chstore.url)


@pytest.fixture(scope="session")
def ch_client(clickhouse_url: str) -> Any:
    from driftline.collector.store.client import connect
    from driftline.collector.store.tables import migrate

    client = connect(clickhouse_url)
    migrate(client)
    return client


def unique_topics(prefix: str = "t") -> Any:
    from driftline.sdk.contract import Topics

    tag = f"{prefix}{uuid.uuid4().hex[:8]}"
    return Topics.with_prefix(tag)


class CollectorProcess:
    """``driftline collector`` as a subprocess, exactly as users and `driftline up` run it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CollectorProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "driftline.cli", "collector"], env=self.env,
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.log_path.parent)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def collector_factory(kafka_bootstrap: str, clickhouse_url: str, ch_client: Any, tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    """Start collectors on fresh topics and a fresh consumer group; stopped at teardown."""
    started: list[CollectorProcess] = []

    def factory(topics: Any, *, group_id: str | None = None, extra_env: dict[str, str] | None = None) -> CollectorProcess:
        from driftline.collector.embedded.broker import free_port

        env = {**os.environ,
               "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap, "DRIFTLINE_CLICKHOUSE_URL": clickhouse_url,
               "DRIFTLINE_TOPIC_PREFIX": topics.predictions.rsplit(".", 1)[0],
               "DRIFTLINE_GROUP_ID": group_id or f"g-{uuid.uuid4().hex[:8]}",
               "DRIFTLINE_METRICS_PORT": str(free_port()), "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "0.2",
               "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
               **(extra_env or {})}
        proc = CollectorProcess(env, tmp_path / f"collector-{len(started)}.log").start()
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, interval_s: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail with the last value seen."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last value: {value!r})")
