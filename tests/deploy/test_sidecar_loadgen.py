"""The sidecar bench's interleaved load generator (bench/sidecar_roles.py, role "interleaved"), run as
bench_sidecar.py runs it, against two real HTTP servers whose answers take known times: every request
is counted against the server that answered it, at the rate asked, from its scheduled send time."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

ROLES = Path(__file__).resolve().parents[2] / "bench" / "sidecar_roles.py"


def _server(delay_s: float, seen: list[float]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the load generator's pools expect
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait between them

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(time.monotonic())
            time.sleep(delay_s)
            body = b'{"prediction": 1}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[tuple[ThreadingHTTPServer, list[float], ThreadingHTTPServer, list[float]]]:
    fast_seen: list[float] = []
    slow_seen: list[float] = []
    fast, slow = _server(0.0, fast_seen), _server(0.02, slow_seen)
    try:
        yield fast, fast_seen, slow, slow_seen
    finally:
        fast.shutdown()
        slow.shutdown()


def test_each_target_gets_its_share_in_interleaved_blocks_and_its_own_latencies(servers) -> None:
    fast, fast_seen, slow, slow_seen = servers
    ports = [fast.server_address[1], slow.server_address[1]]
    out = json.loads(subprocess.run(
        [sys.executable, str(ROLES), "--role", "interleaved", "--ports", ",".join(map(str, ports)), "--rate", "100",
         "--seconds", "1", "--block-s", "0.25", "--gap-s", "0.1", "--conns", "4", "--seed", "3"],
        capture_output=True, check=True, timeout=60).stdout)
    fast_out, slow_out = out[str(ports[0])], out[str(ports[1])]
    # 4 blocks of 0.25 s at 100 req/s each, after a 0.5 s warm-up of each (50 requests, not counted)
    for o, seen in ((fast_out, fast_seen), (slow_out, slow_seen)):
        assert o["summary"]["n"] == len(o["latencies_ms"]) == 100
        assert o["summary"]["errors"] == 0
        assert 80.0 <= o["summary"]["achieved_rps"] <= 101.0  # measured: first send to last answer per block
        assert len(seen) == 150
    # latencies belong to the server that answered: the slow one's 20 ms show only on its port
    assert min(slow_out["latencies_ms"]) >= 20.0
    assert sorted(fast_out["latencies_ms"])[50] < 10.0
    # blocks take turns: the measured requests of each server come in 4 bursts, interleaved with the other's
    measured_fast, measured_slow = fast_seen[50:], slow_seen[50:]
    turns = sorted([(t, "f") for t in measured_fast] + [(t, "s") for t in measured_slow])
    switches = sum(a[1] != b[1] for a, b in zip(turns, turns[1:]))
    assert 4 <= switches <= 7  # one inside each pass over the two, and one between passes or not
