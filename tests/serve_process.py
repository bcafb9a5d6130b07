"""A real ``khabar serve`` process on a free port, for the tests that need one (SIGTERM, the browser)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``khabar serve`` for the given model directories; a context manager that waits until it is ready."""

    def __init__(self, *flags: str, classifier: Path | None = None, summarizer: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        models = [*(["--classifier", str(classifier)] if classifier else [])]
        models += ["--summarizer", str(summarizer)] if summarizer else []
        self._log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        self.command = [sys.executable, "-m", "inference.cli", "serve", *models, "--port", str(self.port), *flags]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.wait_until(lambda health: health["status"] == "ok" and self._ready(), 120, "ready")
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()
        os.unlink(self._log.name)

    def _ready(self) -> bool:
        import httpx

        return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200

    def health(self) -> dict | None:
        import httpx

        try:
            return httpx.get(f"{self.url}/healthz", timeout=5).json()
        except httpx.HTTPError:
            return None

    def wait_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"khabar serve exited with {self.process.returncode}:\n{self.log()}")
            health = self.health()
            if health is not None and condition(health):
                return
            time.sleep(0.05)
        raise AssertionError(f"khabar serve was not {what} within {timeout}s:\n{self.log()}")

    def wait_for_requests(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` API requests are being worked on."""
        self.wait_until(lambda health: health.get("in_flight", 0) >= count, timeout, f"busy with {count} requests")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")[-3000:]
