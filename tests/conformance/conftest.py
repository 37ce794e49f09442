"""Fixtures of the Tablestore conformance suite.

The suite judges our emulator (`ots-emulator`) with the official Python SDK (`tablestore` 6.4.8).
One emulator process serves the whole session; every test works in tables of its own.

Parser mode: the environment variable OTS_SDK_NATIVE selects how the SDK decodes rows.
  OTS_SDK_NATIVE=1 (default)  the SDK's small C PlainBuffer parser, with native_fallback=False so a
                              row the C parser rejects fails the test instead of silently falling
                              back to the pure-Python decoder;
  OTS_SDK_NATIVE=0            enable_native=False: the pure-Python decoder.
tests/run.sh runs the suite once in each mode.
"""

import os
import select
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

import ots_support as sup

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20.0
READY_PREFIX = "listening on "


def _mode():
    return "native C parser (enable_native=True, native_fallback=False)" if sup.NATIVE else \
        "pure Python (enable_native=False)"


def pytest_report_header(config):
    return f"tablestore SDK parser mode: {_mode()}; emulator: {_binary_path()}"


def pytest_terminal_summary(terminalreporter):
    # Shown even with -q, so the two runs of tests/run.sh can be told apart.
    terminalreporter.write_line(f"tablestore {sup.tablestore.__version__} SDK parser mode: {_mode()}")


def _binary_path() -> Path:
    env = os.environ.get("OTS_EMULATOR_BIN")
    if env:
        return Path(env)
    target = REPO_ROOT / os.environ.get("CARGO_TARGET_DIR", "target")   # absolute stays absolute
    return target / "debug" / "ots-emulator"


class Emulator:
    """A running ots-emulator process."""

    def __init__(self, proc, endpoint, stderr_path):
        self.proc = proc
        self.endpoint = endpoint
        self.stderr_path = stderr_path

    def stderr_tail(self, n=4000):
        try:
            return Path(self.stderr_path).read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _start_emulator() -> Emulator:
    binary = _binary_path()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise RuntimeError(
            f"emulator binary not found at {binary}: build it with "
            f"`cargo build -p ots-emulator` (or set OTS_EMULATOR_BIN)")
    stderr_file = tempfile.NamedTemporaryFile(prefix="ots-emulator-", suffix=".stderr", delete=False)
    cmd = [str(binary), "--listen", "127.0.0.1:0", "--instance", sup.INSTANCE,
           "--access-key-id", sup.AK_ID, "--access-key-secret", sup.AK_SECRET]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=stderr_file, cwd=REPO_ROOT)
    stderr_file.close()

    deadline = time.monotonic() + READY_TIMEOUT_S
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"ots-emulator printed no ready line within {READY_TIMEOUT_S:.0f}s "
                f"(stdout so far: {buf!r}); stderr:\n{Path(stderr_file.name).read_text(errors='replace')[-4000:]}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            code = proc.wait()
            raise RuntimeError(
                f"ots-emulator exited with status {code} before it was ready "
                f"(stdout: {buf!r}); stderr:\n{Path(stderr_file.name).read_text(errors='replace')[-4000:]}")
        buf += chunk
    line = buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not line.startswith(READY_PREFIX + "http://127.0.0.1:"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"unexpected ready line from ots-emulator: {line!r} "
                           f"(expected 'listening on http://127.0.0.1:PORT')")
    endpoint = line[len(READY_PREFIX):]

    # Keep draining stdout so that later output can never block the emulator on a full pipe.
    def drain():
        try:
            while os.read(fd, 65536):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, name="ots-emulator-stdout", daemon=True).start()
    return Emulator(proc, endpoint, stderr_file.name)


@pytest.fixture(scope="session")
def emulator():
    emu = _start_emulator()
    try:
        yield emu
    finally:
        if emu.proc.poll() is None:
            emu.proc.send_signal(signal.SIGTERM)
            try:
                emu.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                emu.proc.kill()
                emu.proc.wait()
                raise RuntimeError("ots-emulator did not exit within 10 s of SIGTERM")
        try:
            os.unlink(emu.stderr_path)
        except OSError:
            pass


@pytest.fixture(scope="session")
def endpoint(emulator):
    return emulator.endpoint


@pytest.fixture(scope="session")
def client(endpoint):
    return sup.make_client(endpoint)


@pytest.fixture
def new_client(endpoint):
    """Builds further clients (other credentials, instance, region) against the same emulator."""

    def make(**kwargs):
        return sup.make_client(endpoint, **kwargs)

    return make


@pytest.fixture
def table_name():
    """A fresh, valid, unique table name (not created)."""
    return "t_" + uuid.uuid4().hex[:20]


@pytest.fixture
def tables(client):
    """Creates tables for one test and drops them (and any table registered with `adopt`) afterwards."""
    factory = sup.TableFactory(client)
    try:
        yield factory
    finally:
        factory.drop_all()
