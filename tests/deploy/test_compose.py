"""docker-compose.yml and deploy/: valid for Debian's docker-compose, and consistent with the code.

No Docker engine runs here, so the checks are: ``docker-compose config -q`` (schema, interpolation,
required variables), then the parsed file against what the code actually reads — every
``DRIFTLINE_*`` variable a service sets is one its command reads, the settings build from that
environment, every command parses with the real ``driftline`` parser, ports agree with the CLI
defaults, Prometheus scrapes every /metrics, and no secret is written down anywhere.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
DOCKER_COMPOSE = "/usr/bin/docker-compose"
DUMMY_ENV = {"CLICKHOUSE_WRITER_PASSWORD": "dummy-writer", "CLICKHOUSE_READER_PASSWORD": "dummy-reader"}
DRIFTLINE_SERVICES = ("collector", "sidecar", "alerting", "dashboard")

# Source files whose DRIFTLINE_* reads apply to each service's command.
SOURCES = {
    "collector": ["collector/config.py", "collector/pii/config.py"],
    "sidecar": ["sdk/config.py", "sdk/sidecar/config.py", "sdk/sidecar/cli.py"],
    # the ClickHouse URL (DRIFTLINE_CLICKHOUSE_URL) is read through the store's one client module
    "alerting": ["alerting/**/*.py", "collector/store/client.py"],
    "dashboard": ["dashboard/*.py", "collector/store/client.py"],
    "model": [],
}


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert Path(DOCKER_COMPOSE).exists(), "Debian's docker-compose is needed: apt-get install docker-compose"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "COMPOSE_"))}
    return subprocess.run([DOCKER_COMPOSE, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it (interpolated with the dummy passwords)."""
    assert Path(DOCKER_COMPOSE).exists()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "COMPOSE_"))}
    out = subprocess.run([DOCKER_COMPOSE, "-f", str(COMPOSE), "config"], cwd=ROOT, env={**clean, **DUMMY_ENV},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The compose file as written (before interpolation)."""
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _env_literals(patterns: list[str]) -> set[str]:
    """DRIFTLINE_* names the code reads: string constants that are exactly such a name."""
    names: set[str] = set()
    for pattern in patterns:
        for path in ROOT.glob(pattern):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and re.fullmatch(r"DRIFTLINE_[A-Z0-9_]+", node.value):
                    names.add(node.value)
    return names


def _port(url: str) -> int:
    return int(urlparse(url if "://" in url else f"tcp://{url}").port or 0)


def _healthcheck_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return next(t for t in test if str(t).startswith("http://"))


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, is a named volume) for each entry of ``volumes`` (short or long syntax)."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), v["target"], v.get("type") == "volume"))
        else:
            source, target = v.split(":")[:2]
            named = not source.startswith((".", "/"))
            out.append((source if named else str((ROOT / source).resolve()), target, named))
    return out


def _local_paths(service: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """Container path -> host path for the service's bind mounts and secrets (dummy files)."""
    paths = {target: source for source, target, named in _mounts(service) if not named}
    for s in service.get("secrets") or []:
        name = s if isinstance(s, str) else s["source"]
        dummy = tmp_path / name
        dummy.write_text("client:dummy-secret-for-tests\n" if "token" in name else "dummy-secret-for-tests\n")
        paths[f"/run/secrets/{name}"] = str(dummy)
    return paths


# -- the file is valid ---------------------------------------------------------------------------

def test_docker_compose_validates_the_file() -> None:
    out = _compose_config(DUMMY_ENV)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("missing", sorted(DUMMY_ENV))
def test_compose_refuses_to_run_without_each_password(missing: str) -> None:
    out = _compose_config({k: v for k, v in DUMMY_ENV.items() if k != missing})
    assert out.returncode != 0
    assert missing in out.stderr


def test_services_volumes_restart_policies_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "kafka-init", "clickhouse", "collector", "model", "sidecar", "alerting",
                             "dashboard", "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["grafana"]["profiles"] == ["grafana"]
    for name, s in services.items():
        assert s.get("restart") in ("unless-stopped", "always", "on-failure"), name
        if name != "kafka-init":
            assert s.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("kafka", "clickhouse", "prometheus", "grafana", "alerting"):
        assert any(named for _, _, named in _mounts(services[name])), f"{name} keeps no named volume"
    assert set(compose["volumes"]) >= {"kafka-data", "clickhouse-data", "alerting-data", "prometheus-data"}
    # Collector replicas: no fixed container name, no host port (replicas would collide).
    collector = services["collector"]
    assert collector["deploy"]["replicas"] >= 2
    assert "container_name" not in collector and "ports" not in collector
    for name in DRIFTLINE_SERVICES:
        assert services[name]["image"] == collector["image"], "one image for every driftline service"


# -- environment: every DRIFTLINE_* variable is read by the code, and the settings build ----------

@pytest.mark.parametrize("service", ["collector", "sidecar", "alerting", "dashboard", "model"])
def test_every_driftline_variable_is_one_the_code_reads(compose: dict[str, Any], service: str) -> None:
    from driftline.collector.config import ENV_VARS

    known = _env_literals(SOURCES[service])
    if service == "collector":
        known |= set(ENV_VARS) | {"DRIFTLINE_TOPIC_PREFIX"}
    used = {k for k in _env(compose["services"][service]) if k.startswith("DRIFTLINE_")}
    assert used <= known, f"{service} sets variables nothing reads: {sorted(used - known)}"


def test_image_wide_variables_are_read_by_the_code() -> None:
    from driftline.collector.config import ENV_VARS

    every = set(ENV_VARS) | _env_literals(["sdk/**/*.py", "collector/**/*.py", "alerting/**/*.py",
                                          "dashboard/**/*.py", "detectors/**/*.py"])
    dockerfile_vars = set(re.findall(r"\b(DRIFTLINE_[A-Z0-9_]+)=", (ROOT / "Dockerfile").read_text()))
    assert dockerfile_vars and dockerfile_vars <= every, dockerfile_vars - every


def test_collector_settings_build_from_the_compose_environment(compose: dict[str, Any], tmp_path: Path) -> None:
    from driftline.collector.config import CollectorSettings

    service = compose["services"]["collector"]
    paths = _local_paths(service, tmp_path)
    env = {k: paths.get(v, v) for k, v in _env(service).items()}
    settings = CollectorSettings.build(env=env)
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.metrics_host == "0.0.0.0", "Prometheus scrapes the collector from another container"
    assert settings.partitions == int(compose["services"]["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"])
    assert settings.partitions >= service["deploy"]["replicas"], "replicas beyond the partition count sit idle"
    assert settings.detectors_config is not None and settings.pii_key_file is not None
    assert settings.batch_size == int(service["environment"]["DRIFTLINE_COLLECTOR_BATCH_SIZE"])
    from driftline.detectors.config import load_config

    assert load_config(settings.detectors_config).models


def test_sidecar_settings_build_from_the_compose_environment(compose: dict[str, Any]) -> None:
    from driftline.sdk.config import SdkSettings

    settings = SdkSettings.from_env(_env(compose["services"]["sidecar"]))
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.denylist


def test_alert_rules_and_detector_examples_load(compose: dict[str, Any], tmp_path: Path) -> None:
    from driftline.alerting.rules import parse_rules

    service = compose["services"]["alerting"]
    paths = _local_paths(service, tmp_path)
    command = service["command"]
    rules_path = paths[command[command.index("--rules") + 1]]
    text = Path(rules_path).read_text()
    for container, host in paths.items():
        text = text.replace(container, host)
    rules = parse_rules(yaml.safe_load(text), env=_env(service))
    assert rules.rules and rules.channels


# -- commands and ports ---------------------------------------------------------------------------

@pytest.mark.parametrize("service", DRIFTLINE_SERVICES)
def test_commands_parse_with_the_driftline_cli(compose: dict[str, Any], service: str) -> None:
    from driftline.cli import build_parser

    command = compose["services"][service]["command"]
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert command[0] in choices, f"`driftline {command[0]}` is not registered in cli/main.py"
    args = parser.parse_args(command)
    assert getattr(args, "handler", None) or getattr(args, "func", None)


def _args(compose: dict[str, Any], service: str) -> Any:
    from driftline.cli import build_parser

    return build_parser().parse_args(compose["services"][service]["command"])


def test_ports_match_the_cli_defaults(compose: dict[str, Any]) -> None:
    from driftline.collector.store.client import parse_url
    from driftline.collector.config import CollectorSettings
    from driftline.collector.embedded.stack import StackOptions
    from driftline.cli import build_parser
    from driftline.sdk.config import DEFAULT_BOOTSTRAP

    services = compose["services"]
    # Collector metrics: the default port, on every interface, and what the health check probes.
    collector_env = _env(services["collector"])
    assert int(collector_env["DRIFTLINE_METRICS_PORT"]) == CollectorSettings().metrics_port
    assert _port(_healthcheck_url(services["collector"])) == CollectorSettings().metrics_port
    # Sidecar: the CLI's default port, listening on all interfaces, published as is.
    sidecar = _args(compose, "sidecar")
    default = build_parser().parse_args(["sidecar", "--upstream", "http://x:1", "--model", "m"])
    assert sidecar.port == default.port and sidecar.host == "0.0.0.0"
    assert any(str(p.get("target")) == str(sidecar.port) for p in services["sidecar"]["ports"])
    assert _port(_healthcheck_url(services["sidecar"])) == sidecar.port
    upstream = urlparse(sidecar.upstream)
    assert upstream.hostname == "model" and _port(_healthcheck_url(services["model"])) == upstream.port
    # Dashboard: the port `driftline up` uses.
    dashboard_cmd = services["dashboard"]["command"]
    dashboard_port = int(dashboard_cmd[dashboard_cmd.index("--port") + 1])
    assert dashboard_port == StackOptions.dashboard_port == build_parser().parse_args(["dashboard"]).port
    assert _args(compose, "dashboard").host == "0.0.0.0"
    assert any(str(p.get("target")) == str(dashboard_port) for p in services["dashboard"]["ports"])
    assert _port(_healthcheck_url(services["dashboard"])) == dashboard_port
    # Alerting metrics: what the health check probes.
    alerting = _args(compose, "alerting")
    assert alerting.metrics_port and _port(_healthcheck_url(services["alerting"])) == alerting.metrics_port
    # Kafka and ClickHouse: the default client ports, reachable under their service names.
    kafka_port = _port(DEFAULT_BOOTSTRAP)
    assert f"PLAINTEXT://kafka:{kafka_port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name in DRIFTLINE_SERVICES:
        env = _env(services[name])
        if "DRIFTLINE_KAFKA_BOOTSTRAP" in env:
            assert env["DRIFTLINE_KAFKA_BOOTSTRAP"] == f"kafka:{kafka_port}", name
        if "DRIFTLINE_CLICKHOUSE_URL" in env:
            params = parse_url(env["DRIFTLINE_CLICKHOUSE_URL"])
            assert params["host"] == "clickhouse" and params["port"] == 8123 == parse_url("http://h")["port"], name


def test_clickhouse_accounts_writer_and_read_only(compose: dict[str, Any]) -> None:
    from driftline.collector.store.client import parse_url

    users = ET.parse(DEPLOY / "clickhouse/users.d/driftline.xml").getroot()
    accounts = {parse_url(_env(compose["services"][n])["DRIFTLINE_CLICKHOUSE_URL"])["username"]: n
                for n in ("collector", "alerting", "dashboard")}
    passwords = {n: parse_url(_env(compose["services"][n])["DRIFTLINE_CLICKHOUSE_URL"])["password"]
                 for n in ("collector", "alerting", "dashboard")}
    assert passwords == {"collector": "dummy-writer", "alerting": "dummy-writer", "dashboard": "dummy-reader"}
    assert parse_url(_env(compose["services"]["dashboard"])["DRIFTLINE_CLICKHOUSE_URL"])["username"] == "driftline_reader"
    ch_env = _env(compose["services"]["clickhouse"])
    for user in accounts:
        node = users.find(f"users/{user}")
        assert node is not None, f"ClickHouse user {user} is not defined in users.d"
        password = node.find("password")
        assert password is not None and not (password.text or "").strip(), "no password in the file"
        assert ch_env.get(password.get("from_env", "")), f"{user}'s password variable is not set for clickhouse"
    reader_profile = users.find(f"profiles/{users.find('users/driftline_reader/profile').text}")
    assert reader_profile.find("readonly").text == "1"
    constraints = reader_profile.find("constraints")
    limits = {}
    for setting in ("max_execution_time", "max_result_rows"):
        c = constraints.find(setting)
        assert c is not None and c.find("max") is not None, f"no upper bound on {setting}"
        limits[setting] = float(c.find("max").text)
        if c.find("changeable_in_readonly") is not None:
            config = ET.parse(DEPLOY / "clickhouse/config.d/driftline.xml").getroot()
            assert config.find("access_control_improvements/settings_constraints_replace_previous").text == "true"
    # The limits the read-only clients ask for fit inside the bounds, or ClickHouse would refuse them.
    import inspect

    from driftline.collector.store.sql_cli import run_query

    sql_defaults = inspect.signature(run_query).parameters
    assert sql_defaults["max_execution_time_s"].default <= limits["max_execution_time"]
    assert sql_defaults["max_rows"].default <= limits["max_result_rows"]
    dash = _env(compose["services"]["dashboard"])
    assert int(dash["DRIFTLINE_DASHBOARD_SQL_MAX_TIME_S"]) <= limits["max_execution_time"]
    assert int(dash["DRIFTLINE_DASHBOARD_SQL_MAX_ROWS"]) <= limits["max_result_rows"]
    grants = " ".join(q.text for q in users.findall("users/driftline_reader/grants/query"))
    assert "SELECT" in grants and "INSERT" not in grants and "ALL" not in grants


# -- monitoring --------------------------------------------------------------------------------------

def test_prometheus_scrapes_every_metrics_endpoint(compose: dict[str, Any]) -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets: set[tuple[str, int]] = set()
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            targets |= {(t.split(":")[0], int(t.split(":")[1])) for t in sc["targets"]}
        for sd in job.get("dns_sd_configs", []):
            targets |= {(n, int(sd["port"])) for n in sd["names"]}
    services = compose["services"]
    for name in DRIFTLINE_SERVICES:
        url = _healthcheck_url(services[name])
        if url.endswith("/metrics"):
            assert (name, _port(url)) in targets, f"Prometheus does not scrape {name}"
    assert ("sidecar", _args(compose, "sidecar").port) in targets  # the sidecar's metrics beside /healthz
    from driftline.sdk.sidecar.config import DEFAULT_METRICS_PATH  # /metrics is the model server's

    sidecar_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "driftline-sidecar")
    assert sidecar_job.get("metrics_path") == DEFAULT_METRICS_PATH
    for host, _ in targets:
        assert host in services or host == "localhost", host
    prometheus_mounts = [source for source, _, named in _mounts(services["prometheus"]) if not named]
    assert str((DEPLOY / "prometheus.yml").resolve()) in prometheus_mounts


def test_grafana_dashboard_queries_metrics_the_code_exports() -> None:
    source = "".join(p.read_text()
                     for pattern in ("sdk/**/*.py", "collector/**/*.py", "detectors/**/*.py", "alerting/**/*.py")
                     for p in ROOT.glob(pattern))
    exported = set(re.findall(r'"(driftline_[a-z0-9_]+)"', source))
    dashboard = json.loads((DEPLOY / "grafana/dashboards/driftline-overview.json").read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"\b(driftline_[a-z0-9_]+)", target["expr"]):
                base = re.sub(r"(_total|_bucket|_sum|_count)$", "", metric)
                assert metric in exported or base in exported or f"{base}_total" in exported, metric
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/driftline.yaml").read_text())
    clickhouse = next(d for d in datasources["datasources"] if "clickhouse" in d["type"])
    assert clickhouse["jsonData"]["username"] == "driftline_reader"
    assert clickhouse["secureJsonData"]["password"].startswith("$")


# -- no secrets, image hygiene ----------------------------------------------------------------------

_SECRETISH = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$|WEBHOOK", re.IGNORECASE)


def test_no_secret_is_written_in_the_compose_file(raw: dict[str, Any]) -> None:
    for name, service in raw["services"].items():
        for key, value in _env(service).items():
            if _SECRETISH.search(key) and not key.endswith("_FILE") and key != "GF_SECURITY_ADMIN_PASSWORD__FILE":
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", value), f"{name}.{key} must be ${{VAR:?}}"
            if key.endswith("_FILE") or key.endswith("__FILE"):
                assert value.startswith("/run/secrets/"), f"{name}.{key}"
            for url in re.findall(r"[a-z]+://[^\s]+", value):
                userinfo = urlparse(url).netloc.rpartition("@")[0]
                if ":" in userinfo:
                    assert re.search(r":\$\{[A-Z0-9_]+:\?", url), f"{name}.{key}: password written in a URL"
    for secret in raw["secrets"].values():
        assert secret["file"].startswith("${"), "secret files are paths the operator chooses"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "secrets/" in ignored and ".env" in ignored


def test_dockerfile_one_non_root_image_with_entrypoint_and_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms and all(f == "python:3.11-slim" for f in froms)
    assert re.search(r'^ENTRYPOINT \["driftline"\]', text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert 'pip install -c requirements.lock ".[server]"' in text  # the tested versions, not the newest
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    for line in re.findall(r"^(?:ENV|ARG)\b.*$", text, re.MULTILINE):
        assert not _SECRETISH.search(line.split("#")[0]), line
    # Every file the build copies must exist, or `docker build` stops there.
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), f"COPY {src}: no such path"


def test_example_model_builds_and_answers(tmp_path: Path) -> None:
    import time
    import urllib.request

    model = tmp_path / "model.joblib"
    script = DEPLOY / "example_model.py"
    subprocess.run(["python", str(script), "build", str(model)], check=True, capture_output=True, timeout=120)
    from driftline.collector.embedded.broker import free_port

    port = free_port()  # outside the ephemeral range: no connection takes it before the server binds
    proc = subprocess.Popen(["python", str(script), "serve", str(model), str(port)])
    try:
        deadline = time.monotonic() + 30
        body = json.dumps({"tenure_months": 3, "monthly_spend": 80.5, "support_tickets": 4, "plan": "pro"}).encode()
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body, method="POST")
                with urllib.request.urlopen(req, timeout=2) as r:
                    answer = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "example model did not start"
                time.sleep(0.2)
        assert set(answer) == {"churn", "stay"} and abs(answer["churn"] + answer["stay"] - 1) < 1e-5
    finally:
        proc.terminate()
        proc.wait(10)


def test_healthcheck_script(tmp_path: Path) -> None:
    out = subprocess.run(["python", str(DEPLOY / "healthcheck.py"), "http://127.0.0.1:9/none"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "127.0.0.1:9" in out.stderr
    assert shutil.which("python")
