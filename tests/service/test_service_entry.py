"""serve.py itself: the Hydra entry point starts uvicorn over a bundle, with the token from the environment."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import engine.service.config  # noqa: F401  registers serve.py's schema

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(bundle_dir, tmp_path):
    port = free_port()
    env = {**os.environ, "SEGMENT_ENGINE_TOKEN": "from-env"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py"), f"bundle={bundle_dir}", f"port={port}", "log_level=warning"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert process.poll() is None, process.stdout.read().decode()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_py_serves_the_bundle_docs_and_guards_writes(served, bundle_dir, tmp_path):
    assert httpx.get(f"{served}/health").json()["bundle"] == str(bundle_dir.resolve())
    assert httpx.get(f"{served}/docs").status_code == 200
    assert httpx.delete(f"{served}/customers/anyone").status_code == 401
    auth = {"Authorization": "Bearer from-env"}
    assert httpx.delete(f"{served}/customers/anyone", headers=auth).status_code == 404
    assert not list(tmp_path.iterdir()), "the service writes nothing into its working directory"


@pytest.mark.parametrize("override, key", [("prot=1", "prot"), ("port=eighty", "port")])
def test_a_wrong_key_or_type_fails_at_composition(override, key):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        with pytest.raises(ConfigCompositionException, match=key):
            compose("serve", overrides=[override])
        assert compose("serve", overrides=["port=9000"]).port == 9000
