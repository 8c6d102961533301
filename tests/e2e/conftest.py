"""Session fixtures: a fake provider and a floopy-gateway, both the real binaries,
on free ports of 127.0.0.1, with a gateway configuration written for the run.

Run through tests/e2e/run.sh, which sets FLOOPY_BIN_DIR.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

ORG_ID = "0190b000-0000-7000-8000-000000000001"
PROJECT_ID = "0190b000-0000-7000-8000-0000000000c1"
# A valid UUID naming no project of the org.
UNKNOWN_PROJECT_ID = "0190b000-0000-7000-8000-0000000000ff"

OPEN_KEY_ID = "0190b000-0000-7000-8000-00000000000a"
OPEN_KEY = "fpk_e2eOpenDevelopmentKey0123456789abcdefXYZ"
LOCKED_KEY_ID = "0190b000-0000-7000-8000-00000000000b"
LOCKED_KEY = "fpk_e2eLockedProductionKey0123456789abcdefXYZ"
# Well formed, but no such key is configured.
UNKNOWN_KEY = "fpk_e2eNoSuchKeyAnywhere0123456789abcdefghijXYZ"

OPENAI_PROVIDER = "fake-openai"
ANTHROPIC_PROVIDER = "fake-anthropic"
OPENAI_MODEL = "gpt-4o"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
GATEWAY_ID = "e2e"

STARTUP_TIMEOUT_S = 20.0
LOG_POLL_TIMEOUT_S = 5.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_dir() -> Path:
    return Path(os.environ.get("FLOOPY_BIN_DIR", REPO_ROOT / "target" / "debug"))


def binary(name: str) -> Path:
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        pytest.exit(f"{path} is missing: run tests/e2e/run.sh (it builds it)", returncode=2)
    return path


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> bool:
    """SIGTERM, wait, SIGKILL if needed. True when it exited on SIGTERM."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        return False


def gateway_config(
    listen: str, admin_listen: str, provider_url: str, log_path: Path
) -> str:
    """The gateway YAML. JSON is valid YAML, so it is written as JSON."""
    config = {
        "server": {
            "listen": listen,
            "admin_listen": admin_listen,
            "threads": 2,
            "gateway_id": GATEWAY_ID,
            "grace_period_seconds": 1,
            "graceful_shutdown_timeout_seconds": 1,
        },
        "providers": [
            {
                "name": OPENAI_PROVIDER,
                "kind": "openai",
                "base_url": provider_url,
                "models": [OPENAI_MODEL],
            },
            {
                "name": ANTHROPIC_PROVIDER,
                "kind": "anthropic",
                "base_url": provider_url,
                "models": [ANTHROPIC_MODEL],
            },
        ],
        "pricing": [
            {
                "model": OPENAI_MODEL,
                "input_per_mtok_usd": 2.5,
                "output_per_mtok_usd": 10.0,
                "cached_input_per_mtok_usd": 1.25,
            },
            {
                "model": ANTHROPIC_MODEL,
                "input_per_mtok_usd": 3.0,
                "output_per_mtok_usd": 15.0,
                "cached_input_per_mtok_usd": 0.3,
            },
        ],
        "control": {
            "source": "file",
            "orgs": [
                {
                    "id": ORG_ID,
                    "name": "E2E Org",
                    "plan": "pro",
                    "projects": [
                        {"id": PROJECT_ID, "name": "Checkout", "slug": "checkout"},
                    ],
                    "api_keys": [
                        {
                            "id": OPEN_KEY_ID,
                            "name": "e2e-open",
                            "environment": "development",
                            "secret": OPEN_KEY,
                        },
                        {
                            "id": LOCKED_KEY_ID,
                            "name": "e2e-locked",
                            "environment": "production",
                            "project_id": PROJECT_ID,
                            "secret": LOCKED_KEY,
                        },
                    ],
                }
            ],
        },
        "log_sink": {"kind": "file", "path": str(log_path)},
    }
    return json.dumps(config, indent=2) + "\n"


@dataclass
class Gateway:
    port: int
    admin_port: int
    provider_url: str
    log_path: Path
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_records(self) -> list[dict]:
        """Every record written so far (a partial last line is ignored)."""
        try:
            text = self.log_path.read_text()
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # The writer may be mid-line; the next poll sees it whole.
                continue
        return records

    def log_record(self, request_id: str, timeout: float = LOG_POLL_TIMEOUT_S) -> dict:
        """The log record of `request_id`, polling until it is written."""
        deadline = time.monotonic() + timeout
        while True:
            matches = [r for r in self.log_records() if r.get("request_id") == request_id]
            if matches:
                assert len(matches) == 1, f"{len(matches)} log records for {request_id}: {matches}"
                return matches[0]
            if time.monotonic() >= deadline:
                tail = self.log_records()[-5:]
                raise AssertionError(
                    f"no log record with request_id {request_id} after {timeout} s; "
                    f"last records: {json.dumps(tail, indent=1)}"
                )
            time.sleep(0.05)


def _wait_for_line(path: Path, proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"no line starting with {prefix!r} (exit code {proc.poll()})")


def _wait_healthy(gateway: Gateway, proc: subprocess.Popen, timeout: float) -> None:
    url = f"http://127.0.0.1:{gateway.admin_port}/healthz"
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"floopy-gateway exited with code {proc.returncode} during startup; stderr:\n"
                f"{gateway.stderr()}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
                last_error = f"status {response.status}"
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last_error = repr(e)
        time.sleep(0.1)
    pytest.fail(
        f"floopy-gateway: GET {url} did not answer 200 within {timeout} s "
        f"(last: {last_error}); stderr:\n{gateway.stderr()}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("e2e")
    procs: list[tuple[str, subprocess.Popen]] = []
    files = []

    def spawn(
        name: str, args: list[str], stdout: Path, stderr: Path, env: dict | None = None
    ) -> subprocess.Popen:
        out = open(stdout, "wb")
        err = open(stderr, "wb")
        files.extend([out, err])
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp, env=env
        )
        procs.append((name, proc))
        return proc

    try:
        provider_port = free_port()
        provider_out = tmp / "fake-provider.out"
        provider = spawn(
            "fake-provider",
            [str(binary("fake-provider")), "--listen", f"127.0.0.1:{provider_port}"],
            provider_out,
            tmp / "fake-provider.err",
        )
        try:
            line = _wait_for_line(
                provider_out, provider, "fake-provider listening on ", STARTUP_TIMEOUT_S
            )
        except RuntimeError as e:
            err = (tmp / "fake-provider.err").read_text(errors="replace")
            pytest.fail(f"fake-provider did not start: {e}; stderr:\n{err}", pytrace=False)
        provider_addr = line.removeprefix("fake-provider listening on ").strip()
        provider_url = f"http://{provider_addr}"

        port, admin_port = free_port(), free_port()
        while admin_port == port:
            admin_port = free_port()
        gw = Gateway(
            port=port,
            admin_port=admin_port,
            provider_url=provider_url,
            log_path=tmp / "logs.jsonl",
            stderr_path=tmp / "gateway.err",
        )
        config_path = tmp / "gateway.yaml"
        config_path.write_text(
            gateway_config(f"127.0.0.1:{port}", f"127.0.0.1:{admin_port}", provider_url, gw.log_path)
        )
        env = dict(os.environ)
        env.setdefault("FLOOPY_LOG", "info")
        gateway_proc = spawn(
            "floopy-gateway",
            [str(binary("floopy-gateway")), "--config", str(config_path)],
            tmp / "gateway.out",
            gw.stderr_path,
            env,
        )
        _wait_healthy(gw, gateway_proc, STARTUP_TIMEOUT_S)

        yield gw

        assert gateway_proc.poll() is None, (
            f"floopy-gateway died during the tests (code {gateway_proc.returncode}); "
            f"stderr:\n{gw.stderr()}"
        )
    finally:
        # The gateway first, so it does not see its provider disappear.
        not_graceful = []
        for name, proc in reversed(procs):
            if not stop(proc):
                not_graceful.append(name)
        for f in files:
            f.close()
    assert not not_graceful, f"needed SIGKILL to stop: {not_graceful}"


@pytest.fixture(scope="session")
def base_url(gateway: Gateway) -> str:
    return gateway.base_url
