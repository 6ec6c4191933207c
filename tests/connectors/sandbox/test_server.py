"""Running the sandbox: in a thread for tests, and alone as `payrail sandbox-psp`."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from payrail.clock import SystemClock
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox.server import run_sandbox
from tests.connectors.sandbox.helpers import new_key, payment_body


def test_run_sandbox_stops_cleanly_even_with_a_request_hanging() -> None:
    ended: list[float] = []

    def hang(url: str) -> None:
        headers = {
            "Authorization": "Bearer sbx_sk_sandbox",
            "Idempotency-Key": "k",
            "Sandbox-Fault": "timeout_before",
        }
        # Cut off (an error, or uvicorn's 500): what a client of a stopping server may see.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{url}/v1/payments", json=payment_body(), headers=headers, timeout=30)
        ended.append(time.monotonic())

    with run_sandbox(SandboxConfig(hang_seconds=60), SystemClock(), grace_seconds=1) as url:
        assert httpx.get(f"{url}/health").json() == {"ok": True}
        client = threading.Thread(target=hang, args=(url,))
        client.start()
        time.sleep(0.1)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5
    client.join(5)
    assert ended and ended[0] - stopping < 5, "the hanging request did not hold the stop up"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")


def _start(secret: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "payrail", "sandbox-psp", "--port", "0", "--seed", "3"]
    command += ["--fault-rate", "0.5", "--hang-seconds", "0", "--secret", secret]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.timeout(60)
def test_the_command_serves_until_sigterm_or_ctrl_c() -> None:
    # Both started at once: most of each one's time is Python importing the CLI.
    processes = {how: _start(f"sbx_sk_cli_{how.name}") for how in (signal.SIGTERM, signal.SIGINT)}
    try:
        for how, process in processes.items():
            assert process.stdout is not None
            line = process.stdout.readline()
            found = re.search(r"listening on (http://\S+) \(seed 3, fault rate 0.5", line)
            assert found, line
            url = found.group(1)
            assert httpx.get(f"{url}/health").json() == {"ok": True}
            assert httpx.get(f"{url}/sandbox/record").status_code == 401
            headers = {"Authorization": f"Bearer sbx_sk_cli_{how.name}"}
            statuses = {
                httpx.post(
                    f"{url}/v1/payments",
                    json=payment_body(),
                    headers={**headers, "Idempotency-Key": new_key()},
                ).status_code
                for _ in range(20)
            }
            assert 200 in statuses and statuses - {200}, "the command line's fault rate applies"
            process.send_signal(how)
        for process in processes.values():
            output, _ = process.communicate(timeout=20)
            assert process.returncode == 0, output
            assert "sandbox PSP stopped" in output
            assert "Traceback" not in output
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
