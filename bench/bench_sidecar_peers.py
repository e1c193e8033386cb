"""The sidecar and ``driftline serve`` against real peers, each in a virtual environment of its own.

    python bench/bench_sidecar_peers.py [--only tritonclient,mlserver,kserve]

Venvs are made once under ``.cache/bench-venvs/`` (pip, from the registry): ``tritonclient[http]``
2.73, ``mlserver`` 1.7.1, ``kserve`` 0.21.0. Each check runs the peer as a subprocess and the
sidecar in this process (an in-memory event sink), and asserts what the issue asked for:

* tritonclient -> sidecar -> a binary-answering upstream: binary and JSON tensors, plain, gzip and
  deflate request compression; every row of every datatype an ``ok`` event;
* tritonclient -> ``driftline serve``: server/model metadata, readiness, JSON and binary infer with
  and without gzip, a wrong datatype answered 400 with the field in the message;
* MLServer (its codecs) behind the sidecar: plain and gzip bodies answered alike directly and
  through the sidecar; its ``[n, 1]`` outputs logged as scalars;
* KServe's model server behind the sidecar: v1 and v2 answered alike directly and through the
  sidecar (gzip included: KServe refuses gzip bodies either way); KServe's own ``/metrics``
  reachable through the sidecar, the sidecar's at ``/driftline/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from driftline.collector.embedded.broker import free_port  # noqa: E402
from driftline.sdk.sidecar.config import DEFAULT_METRICS_PATH  # noqa: E402
from tests.sdk.sidecar.test_oip_binary import FIXTURE, BinaryUpstream, expected_rows  # noqa: E402
from tests.sdk.sidecar.testkit import serve_app, sidecar  # noqa: E402

VENVS = ROOT / ".cache" / "bench-venvs"
PEERS = {"tritonclient": "tritonclient[http]==2.73.0", "mlserver": "mlserver==1.7.1", "kserve": "kserve==0.21.0"}
HERE = Path(__file__).resolve().parent


def venv(name: str) -> Path:
    d = VENVS / f"peer-{name}"
    py = d / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(d)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", PEERS[name]], check=True)
    return d / "bin"



async def run_client(bin_dir: Path, code: str, *args: str) -> str:
    p = await asyncio.create_subprocess_exec(str(bin_dir / "python"), "-c", code, *args,
                                             stdout=asyncio.subprocess.PIPE, cwd=str(HERE / "peers"))
    out, _ = await p.communicate()
    assert p.returncode == 0, out.decode()
    return out.decode()


TRITON_TO_SIDECAR = r'''
import sys, numpy as np, tritonclient.http as h
from tritonclient.utils import np_to_triton_dtype
sys.path.insert(0, sys.argv[2])
from make_oip_binary import inputs_all_types, outputs_answer
c = h.InferenceServerClient(sys.argv[1])
for binary in (True, False):
    for comp in (None, "gzip", "deflate"):
        ins = []
        for n, a in inputs_all_types().items():
            t = h.InferInput(n, list(a.shape), np_to_triton_dtype(a.dtype)); t.set_data_from_numpy(a, binary_data=binary)
            ins.append(t)
        r = c.infer("iris", ins, outputs=[h.InferRequestedOutput(n, binary_data=True) for n in outputs_answer()],
                    request_compression_algorithm=comp)
        assert (r.as_numpy("label") == outputs_answer()["label"]).all()
'''


async def check_tritonclient_sidecar() -> str:
    bin_dir = venv("tritonclient")
    up = BinaryUpstream()
    async with serve_app(up.app(), auto_decompress=False) as u, sidecar(u) as (url, sc, sink):
        await run_client(bin_dir, TRITON_TO_SIDECAR, url.replace("http://", ""),
                         str(ROOT / "tests" / "sdk" / "sidecar" / "fixtures"))
        events = await sink.events()
    want = expected_rows(FIXTURE["inputs"]) * 6
    assert [e["features"] for e in events] == want, "rows differ"
    assert all(e["status"] == "ok" and e["error"] is None for e in events)
    return f"{len(events)} events from 6 requests (binary/JSON x plain/gzip/deflate), all ok, rows as sent"


TRITON_TO_SERVE = r'''
import sys, numpy as np, tritonclient.http as h
from tritonclient.utils import InferenceServerException
c = h.InferenceServerClient(sys.argv[1])
assert c.get_server_metadata()["name"] == "driftline"
meta = c.get_model_metadata("churn")
assert [t["name"] for t in meta["inputs"]] == ["age", "income"], meta
assert c.is_model_ready("churn") and not c.is_model_ready("other")
for binary in (True, False):
    for comp in (None, "gzip"):
        ins = []
        for n, v in (("age", [[20.0], [79.0]]), ("income", [[0.5], [9.5]])):
            t = h.InferInput(n, [2, 1], "FP64"); t.set_data_from_numpy(np.array(v), binary_data=binary); ins.append(t)
        assert c.infer("churn", ins, request_compression_algorithm=comp).as_numpy("predict").tolist() == [0, 1]
t = h.InferInput("age", [2, 1], "INT64"); t.set_data_from_numpy(np.array([[1], [2]]), binary_data=False)
t._data = [1, 2.5]
try:
    c.infer("churn", [t]); raise SystemExit("accepted 2.5 as INT64")
except InferenceServerException as e:
    print(e)
'''


async def check_tritonclient_serve() -> str:
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from tests.sdk.sidecar.test_serve import served

    bin_dir = venv("tritonclient")
    X = pd.DataFrame({"age": np.linspace(18, 80, 50), "income": np.linspace(0, 10, 50)})
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "churn.joblib")
        joblib.dump(LogisticRegression().fit(X, (X.age / 80 + X.income / 10 > 1).astype(int)), path)
        async with served(path) as (url, sink):
            err = await run_client(bin_dir, TRITON_TO_SERVE, url.replace("http://", ""))
            events = await sink.events()
    assert "inputs[0].data[1]: INT64 expects integers, got 2.5" in err, err
    assert len(events) == 8 and all(e["status"] == "ok" for e in events)
    return f"metadata, readiness, 4 infers (binary/JSON x plain/gzip) ok; the error reads: {err.strip()}"


MLSERVER_CLIENT = r'''
import gzip, sys, urllib.request, numpy as np
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
body = InferenceRequest(inputs=[NumpyCodec.encode_input("x", np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.5]]))]
                        ).model_dump_json().encode()
for base in sys.argv[1:]:
    for gz in (False, True):
        data, extra = (gzip.compress(body), {"Content-Encoding": "gzip"}) if gz else (body, {})
        r = urllib.request.Request(base + "/v2/models/sum/infer", data=data, method="POST",
                                   headers={"Content-Type": "application/json", **extra})
        with urllib.request.urlopen(r, timeout=30) as resp:
            out = InferenceResponse.model_validate_json(resp.read())
            assert NumpyCodec.decode_output(out.outputs[0]).tolist() == [[3.0], [7.0], [11.5]]
'''


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} never became ready")


async def check_mlserver() -> str:
    bin_dir = venv("mlserver")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(HERE / "peers" / "mlserver_sum.py", Path(tmp) / "mlserver_sum.py")
        shutil.copy(HERE / "peers" / "mlserver-model-settings.json", Path(tmp) / "model-settings.json")
        http = free_port()
        env = {**os.environ, "MLSERVER_HTTP_PORT": str(http), "MLSERVER_GRPC_PORT": str(free_port()),
               "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_PARALLEL_WORKERS": "0",
               "MLSERVER_HOST": "127.0.0.1"}
        srv = subprocess.Popen([str(bin_dir / "mlserver"), "start", tmp], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            up = f"http://127.0.0.1:{http}"
            await wait_ready(up + "/v2/models/sum/ready")
            async with sidecar(up) as (url, sc, sink):
                await run_client(bin_dir, MLSERVER_CLIENT, up, url)
                events = await sink.events()
        finally:
            srv.terminate()
            srv.wait(30)
    assert [e["prediction"] for e in events] == [3.0, 7.0, 11.5] * 2
    assert all(e["status"] == "ok" for e in events)
    return "plain and gzip answered 200 directly and through the sidecar; [n, 1] outputs logged as scalars"


KSERVE_SERVER = r'''
import sys
from kserve import InferOutput, InferResponse, Model, ModelServer
class Sum(Model):
    def __init__(self):
        super().__init__("sum"); self.ready = True
    def predict(self, payload, headers=None):
        if isinstance(payload, dict):
            return {"predictions": [sum(r) for r in payload["instances"]]}
        x = payload.inputs[0].as_numpy()
        out = InferOutput(name="y", shape=[x.shape[0]], datatype="FP64")
        out.set_data_from_numpy(x.sum(axis=1).astype("float64"), binary_data=False)
        return InferResponse(model_name="sum", infer_outputs=[out], response_id="r")
ModelServer(http_port=int(sys.argv[1]), grpc_port=int(sys.argv[2]), enable_grpc=False).start([Sum()])
'''


async def check_kserve() -> str:
    bin_dir = venv("kserve")
    http = free_port()
    srv = subprocess.Popen([str(bin_dir / "python"), "-c", KSERVE_SERVER, str(http), str(free_port())],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    statuses: dict[tuple[str, str, bool], int] = {}
    try:
        up = f"http://127.0.0.1:{http}"
        await wait_ready(up + "/v1/models/sum")
        v1 = json.dumps({"instances": [[1.0, 2.0], [3.0, 4.0]]}).encode()
        v2 = json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64",
                                     "data": [1.0, 2.0, 3.0, 4.0]}]}).encode()
        async with sidecar(up) as (url, sc, sink), aiohttp.ClientSession() as s:
            for where, base in (("direct", up), ("sidecar", url)):
                for path, body in (("/v1/models/sum:predict", v1), ("/v2/models/sum/infer", v2)):
                    for gz in (False, True):
                        headers = {"Content-Type": "application/json", **({"Content-Encoding": "gzip"} if gz else {})}
                        r = await s.post(base + path, data=gzip.compress(body) if gz else body, headers=headers)
                        await r.read()
                        statuses[(where, path, gz)] = r.status
            async with s.get(url + "/metrics") as r:
                own = await r.text()
            async with s.get(url + DEFAULT_METRICS_PATH) as r:
                mine = await r.text()
            events = await sink.events()
    finally:
        srv.terminate()
        srv.wait(30)
    for (where, path, gz), status in statuses.items():
        if where == "sidecar":
            assert status == statuses[("direct", path, gz)], (path, gz, status)
    assert "driftline_sidecar" not in own and "python_gc" in own  # KServe's own metrics
    assert "driftline_sidecar_requests_total" in mine
    ok = [e["prediction"] for e in events if e["status"] == "ok"]
    assert ok == [3.0, 7.0, 3.0, 7.0], ok
    return (f"statuses through the sidecar equal direct ({sorted(set(statuses.values()))}); KServe's /metrics "
            "reachable through it; v1 and v2 rows logged")


CHECKS = {"tritonclient": [check_tritonclient_sidecar, check_tritonclient_serve], "mlserver": [check_mlserver],
          "kserve": [check_kserve]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(CHECKS), help="comma-separated peers")
    args = ap.parse_args()
    failed = 0
    for peer in args.only.split(","):
        for check in CHECKS[peer]:
            try:
                print(f"{check.__name__}: {asyncio.run(check())}", flush=True)
            except Exception as exc:  # noqa: BLE001 - report every peer, then fail
                failed += 1
                print(f"{check.__name__}: FAILED {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
