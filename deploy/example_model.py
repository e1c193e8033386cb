#!/usr/bin/env python3
"""The example model behind the sidecar in docker-compose: any HTTP model server will do; this one
is deliberately not driftline code, like the Flask/TorchServe/Triton servers users put behind it.

``example_model.py build PATH``  trains a small churn classifier (scikit-learn, fixed seed) and
                                  saves it with joblib (also servable by ``driftline serve PATH``).
``example_model.py serve PATH``  serves it: ``POST /predict`` with a flat JSON object or
                                  ``{"instances": [...]}``; ``GET /healthz``.

Request: ``{"tenure_months": 3, "monthly_spend": 80.5, "support_tickets": 4, "plan": "pro"}``.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FEATURES = ("tenure_months", "monthly_spend", "support_tickets", "plan")
PLANS = ("free", "pro", "team")


def _row(obj: dict[str, Any]) -> list[float]:
    plan = str(obj.get("plan", "free"))
    return [float(obj["tenure_months"]), float(obj["monthly_spend"]), float(obj["support_tickets"]),
            float(PLANS.index(plan) if plan in PLANS else 0)]


def build(path: str) -> None:
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    n = 4000
    x = np.column_stack([rng.integers(0, 72, n), rng.gamma(4, 15, n), rng.poisson(1.5, n), rng.integers(0, 3, n)])
    logit = -0.05 * x[:, 0] + 0.01 * x[:, 1] + 0.6 * x[:, 2] - 0.3 * x[:, 3] - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    model = LogisticRegression(max_iter=1000).fit(x.astype(float), y)
    joblib.dump(model, path)
    print(f"example model written to {path} (train accuracy {model.score(x, y):.3f})")


def serve(path: str, host: str = "0.0.0.0", port: int = 8000) -> None:
    import joblib

    model = joblib.load(path)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._send(200, {"ok": True}) if self.path == "/healthz" else self._send(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                return self._send(404, {"error": "not found"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                rows = body["instances"] if isinstance(body, dict) and "instances" in body else [body]
                scores = model.predict_proba([_row(r) for r in rows])[:, 1]
            except (ValueError, KeyError, TypeError) as exc:
                return self._send(422, {"error": f"bad input: {exc}"})
            preds = [{"churn": round(float(s), 6), "stay": round(1 - float(s), 6)} for s in scores]
            self._send(200, {"predictions": preds} if "instances" in body else preds[0])

        def log_message(self, *args: Any) -> None:  # no payloads in logs
            pass

    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "build":
        build(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(sys.argv[2], port=int(sys.argv[3]) if len(sys.argv) > 3 else 8000)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
