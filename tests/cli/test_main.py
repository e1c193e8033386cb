"""The assembled ``driftline`` command (cli/main.py): every package's commands, exit codes, and
a light install (no server extra) that lists every command and explains what a missing one needs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from driftline.cli import build_parser, main
from driftline.cli.main import COMMAND_MODULES

# What a bare `pip install driftline` lacks (scripts/test-sdk-pythons.sh checks the same list).
SERVER_MODULES = ("numpy", "pandas", "scipy", "aiokafka", "chdb", "clickhouse_connect",
                  "presidio_analyzer", "spacy", "streamlit", "aiohttp", "prometheus_client", "sklearn")

_LIGHT = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Light(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Light())
from driftline.cli import main
sys.exit(main(sys.argv[2:]))
"""


def light(*args: str) -> subprocess.CompletedProcess[str]:
    """``driftline ARGS`` in a process where no server package can be imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    return subprocess.run([sys.executable, "-c", _LIGHT, ",".join(SERVER_MODULES), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def _commands() -> set[str]:
    return set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_every_command_module_registers_the_commands_it_names() -> None:
    named = {c.strip() for _, names in COMMAND_MODULES for c in names.split(",")}
    assert named == _commands()


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_python_dash_m_runs_the_command() -> None:
    out = subprocess.run([sys.executable, "-m", "driftline.cli", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    assert all(c in out.stdout for c in ("up", "collector", "sidecar", "serve", "alerts", "dashboard"))


def test_a_light_install_lists_every_command() -> None:
    out = light("--help")
    assert out.returncode == 0, out.stderr
    assert {c.strip() for _, names in COMMAND_MODULES for c in names.split(",")} <= set(out.stdout.split())


@pytest.mark.parametrize("args", [
    ["collector", "--kafka-bootstrap", "k:9092", "--clickhouse-url", "http://h:8123"],
    ["sidecar", "--upstream", "http://127.0.0.1:1", "--model", "m"],
    ["alerts", "list"],
    ["dashboard"],
    ["sql", "SELECT 1"],
])
def test_a_light_install_says_which_extra_a_server_command_needs(args: list[str]) -> None:
    out = light(*args)
    assert out.returncode == 2
    assert "this command needs the server extra: pip install 'driftline[server]'" in out.stderr
    assert "Traceback" not in out.stderr
