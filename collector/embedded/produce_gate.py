"""The produce gate: a Kafka-aware TCP relay in front of the embedded broker that can hold requests.

Tansu listens on a private port and advertises the gate's address, so every client goes through
the gate; ``broker_retention`` holds producers here while it empties the broker's topics. Also
starts Tansu behind a gate, and again behind the same gate after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import struct
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable

logger = logging.getLogger("driftline.collector")

CLIENT_ID = "driftline-retention"
"""Client id of this module's own Kafka clients: the gate never holds their requests."""

PRODUCE, METADATA = 0, 3
_FLEXIBLE_PRODUCE_VERSION = 9  # Produce v9+ uses the flexible request header (tagged fields)


# -- the produce gate -------------------------------------------------------------------------------

OPEN, HOLD_PRODUCE, HOLD_ALL = 0, 1, 2


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def parse_request(frame: bytes) -> tuple[int, str | None, bool]:
    """(api key, client id, whether the broker answers) of one request frame (without its length).

    Only a Produce request with ``acks=0`` gets no answer.
    """
    api_key, api_version = struct.unpack_from(">hh", frame, 0)
    (n,) = struct.unpack_from(">h", frame, 8)
    client_id = frame[10:10 + n].decode("utf-8", "replace") if n >= 0 else None
    if api_key != PRODUCE:
        return api_key, client_id, True
    pos = 10 + max(n, 0)
    try:
        if api_version >= _FLEXIBLE_PRODUCE_VERSION:
            tags, pos = _read_varint(frame, pos)  # request header v2: tagged fields
            for _ in range(tags):
                _tag, pos = _read_varint(frame, pos)
                size, pos = _read_varint(frame, pos)
                pos += size
            length, pos = _read_varint(frame, pos)  # compact nullable transactional id
            pos += max(length - 1, 0)
        elif api_version >= 3:
            (length,) = struct.unpack_from(">h", frame, pos)  # nullable transactional id
            pos += 2 + max(length, 0)
        (acks,) = struct.unpack_from(">h", frame, pos)
    except (IndexError, struct.error):
        return api_key, client_id, True
    return api_key, client_id, acks != 0


class ProduceGate:
    """A Kafka-aware TCP relay in front of the broker that can hold clients' requests.

    Clients connect to ``listen_port``; the broker must advertise this address (so that clients
    reconnect through the gate after reading metadata). Requests are relayed in order, untouched.
    :meth:`hold_produce` makes every Produce request wait before it reaches the broker (a connection
    keeps its order: later requests on it wait too); :meth:`hold_all` holds every request;
    :meth:`release` lets them through. Requests from this module's own clients (:data:`CLIENT_ID`)
    are never held. :attr:`produce_in_flight` counts Produce requests relayed and not yet answered.
    """

    def __init__(self, upstream_host: str, upstream_port: int, listen_port: int = 0, *,
                 host: str = "127.0.0.1", exempt: Iterable[str] = (CLIENT_ID,)) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = listen_port
        self.exempt = frozenset(exempt)
        self.mode = OPEN
        self.produce_in_flight = 0
        self.connections = 0
        self.held = 0  # requests waiting in the gate right now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # control, from any thread
    def start(self) -> ProduceGate:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._released = asyncio.Event()
                self._released.set()
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._client, self.host, self.port, reuse_address=True))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="driftline-produce-gate", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def _call(self, fn: Callable[[], Any]) -> None:
        assert self._loop is not None
        done = threading.Event()

        def wrapped() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(wrapped)
        done.wait(5)

    def hold_produce(self) -> None:
        def f() -> None:
            self.mode = max(self.mode, HOLD_PRODUCE)
            assert self._released is not None
            self._released.clear()
        self._call(f)

    def hold_all(self) -> None:
        def f() -> None:
            self.mode = HOLD_ALL
            assert self._released is not None
            self._released.clear()
        self._call(f)

    def release(self) -> None:
        def f() -> None:
            self.mode = OPEN
            assert self._released is not None
            self._released.set()
        self._call(f)

    def wait_produce_answered(self, timeout_s: float) -> bool:
        """Wait until no relayed Produce request is unanswered; True if none is."""
        deadline = time.monotonic() + timeout_s
        while self.produce_in_flight > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()
            self.mode = OPEN  # held requests go on (to closed connections) instead of waiting forever
            if self._released is not None:
                self._released.set()

        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._loop = None

    def __enter__(self) -> ProduceGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # relay, on the gate's loop
    def _must_wait(self, api_key: int, client_id: str | None) -> bool:
        if self.mode == OPEN or client_id in self.exempt:
            return False
        return self.mode == HOLD_ALL or api_key == PRODUCE

    async def _client(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            b_reader, b_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.close()
            return
        self.connections += 1
        self._writers.update((c_writer, b_writer))
        pending: deque[int] = deque()  # api keys of relayed requests awaiting an answer, in order

        async def up() -> None:
            assert self._released is not None
            while True:
                head = await c_reader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                frame = await c_reader.readexactly(size)
                api_key, client_id, answered = parse_request(frame)
                if self._must_wait(api_key, client_id):
                    self.held += 1
                    try:
                        while self._must_wait(api_key, client_id):
                            await self._released.wait()
                    finally:
                        self.held -= 1
                if answered:
                    pending.append(api_key)
                    if api_key == PRODUCE:
                        self.produce_in_flight += 1
                b_writer.write(head + frame)
                await b_writer.drain()

        async def down() -> None:
            while True:
                head = await b_reader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                frame = await b_reader.readexactly(size)
                if pending and pending.popleft() == PRODUCE:
                    self.produce_in_flight -= 1
                c_writer.write(head + frame)
                await c_writer.drain()

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # A request the client gave up on before it was relayed is dropped with the connection
            # (the client sends it again); unanswered produce requests no longer count.
            self.produce_in_flight -= sum(1 for k in pending if k == PRODUCE)
            self.connections -= 1
            for w in (c_writer, b_writer):
                self._writers.discard(w)
                w.close()


def start_gated_broker(port: int = 0, *, host: str = "127.0.0.1", log_path: Any = None,
                       ready_timeout_s: float = 20.0) -> tuple[Any, ProduceGate]:
    """Tansu on a private port behind a :class:`ProduceGate` on ``port`` (the address clients use).

    The broker advertises the gate's address, so every client connection goes through the gate.
    Returns (the broker process, the started gate); the process's ``bootstrap`` is the gate's
    address, the one to hand out. Stop the broker first, then the gate.
    """
    from driftline.collector.embedded.broker import free_port, port_in_use
    from driftline.sdk.errors import ConfigError

    port = port or free_port(host)
    if port_in_use(host, port):
        raise ConfigError(f"port {port} is already in use; pick another with --kafka-port")
    gate = ProduceGate(host, 0, port, host=host).start()
    try:
        return start_broker_behind(gate, log_path=log_path, ready_timeout_s=ready_timeout_s), gate
    except BaseException:
        gate.stop()
        raise


def start_broker_behind(gate: ProduceGate, *, log_path: Any = None, ready_timeout_s: float = 20.0) -> Any:
    """Start Tansu on a new private port, advertising ``gate``'s address, and point the gate at it.

    Also what a supervisor calls to restart a crashed broker behind the same gate: connections to
    the old broker are closed by the gate and clients reconnect through it.
    """
    import os
    import subprocess

    from driftline.collector.embedded.broker import BrokerProcess, broker_binary, free_port, port_open
    from driftline.collector.embedded.lifeline import die_with_parent

    host = gate.host
    private = free_port(host)
    out: Any = subprocess.DEVNULL
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [broker_binary(), "broker", "--listener-url", f"tcp://{host}:{private}",
         "--advertised-listener-url", f"tcp://{host}:{gate.port}", "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}, start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGKILL))  # memory storage: nothing to stop cleanly for
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the embedded broker exited at start (code {proc.returncode}); see {log_path}")
        if port_open(host, private):
            gate.upstream = (host, private)
            return BrokerProcess(proc, host, gate.port, log_path)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the embedded broker did not listen on {host}:{private} within {ready_timeout_s}s")
