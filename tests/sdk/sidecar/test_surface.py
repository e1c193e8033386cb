"""The package surface of driftline.sdk.sidecar: every public name resolves, and importing the
package or its command module stays free of aiohttp (``driftline --help`` on a light install)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_all_names_resolve_to_what_the_modules_define() -> None:
    pytest.importorskip("aiohttp")  # the names live in modules of the server extra
    import driftline.sdk.sidecar as sidecar
    import driftline.sdk.sidecar.extraction as extraction

    assert set(sidecar.__all__) == {"ExtractSpec", "LocalBackend", "LocalReply", "Router", "ShadowTarget", "Sidecar",
                                    "SidecarKey", "SidecarMetrics", "SidecarSettings", "SplitConfig",
                                    "SplitFileWatcher", "Variant", "SERVER_OPTIONS", "build_app", "extract"}
    for name in sidecar.__all__:
        assert getattr(sidecar, name) is not None, name
    # no submodule shadows a public name: `extract` stays the function once its module is imported
    assert sidecar.extract is extraction.extract and callable(sidecar.extract)


def test_importing_the_package_and_its_commands_does_not_import_aiohttp() -> None:
    code = ("import argparse, sys, driftline.sdk, driftline.sdk.sidecar, driftline.sdk.sidecar.cli as cli; "
            "cli.register(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'prometheus_client')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
