"""Throughput of llm.LLMClient against the scripted loopback server with a fixed latency per request.

For each concurrency C the ceiling is C / latency requests per second. Printed per C: requests/s of
LLMClient.ask (ledger on disk, structured output, parsing) in one process, and split over P client
processes as `generate.processes: P` splits a build (C/P requests in flight each, one shared ledger),
and of bare openai.AsyncOpenAI calls (the baseline, one process, same server); each one's ratio to the
ceiling and client CPU time per call. Target: >= 0.95 of the ceiling at C = 64.

Usage: .venv/bin/python bench/generate.py [--latency-s 0.2] [--rounds 60] [--concurrency 1 16 64] [--processes 1 2 4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longdocvqa.core.recipe import EndpointConfig  # noqa: E402
from longdocvqa.core.records import QA  # noqa: E402
from longdocvqa.llm import Ledger, LLMClient  # noqa: E402

PAGE = "[Current Case]\nPage 4:\nThe quick brown fox jumps over the lazy dog\nA second line of useful text here\n"


def start_server(latency_s: float) -> tuple[subprocess.Popen, str]:
    """The scripted server in its own process (its CPU is not the client's)."""
    cmd = [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--port", "0", "--latency-s", str(latency_s)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].strip()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Write one QA."}, {"role": "user", "content": f"Request {i}. {PAGE}"}]


async def run_client(
    url: str, concurrency: int, count: int, ledger: Path, start: Callable[[], object] = lambda: None
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for `count` LLMClient.ask calls at `concurrency`."""
    ep = EndpointConfig(base_url=url, model="scripted", api_key_env=None, max_concurrency=concurrency, max_retries=0)
    client = LLMClient(ep, ledger)
    offset = int(time.time_ns() % 1_000_000_000) + os.getpid() * 10**9  # fresh prompts: nothing is replayed
    warm = [client.ask(messages(-offset - i), QA, template_id="bench@v1", task="bench") for i in range(concurrency)]
    await asyncio.gather(*warm)  # open every connection first: the ceiling is a steady-state figure
    start()  # all client processes begin together
    wall, cpu = time.perf_counter(), time.process_time()
    answers = await asyncio.gather(
        *(client.ask(messages(offset + i), QA, template_id="bench@v1", task="bench") for i in range(count))
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.aclose()
    assert all(a.ok for a in answers), {a.reason for a in answers}
    return wall, cpu


def _client_process(url: str, concurrency: int, count: int, ledger: Path, barrier: Any, results: Any) -> None:
    results.put(asyncio.run(run_client(url, concurrency, count, ledger, barrier.wait)))


def run_processes(url: str, concurrency: int, count: int, ledger: Path, processes: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) with the calls split over `processes` client processes sharing one ledger."""
    if processes == 1:
        return asyncio.run(run_client(url, concurrency, count, ledger))
    Ledger(ledger).close()  # created once, as the pipeline does before it starts its workers
    ctx = multiprocessing.get_context()
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    share = (concurrency // processes, count // processes)
    workers = [ctx.Process(target=_client_process, args=(url, *share, ledger, barrier, results))
               for _ in range(processes)]  # fmt: skip
    for worker in workers:
        worker.start()
    walls, cpus = zip(*(results.get() for _ in workers), strict=True)
    for worker in workers:
        worker.join()
    return max(walls), sum(cpus)


async def run_baseline(url: str, concurrency: int, count: int) -> tuple[float, float]:
    """The same calls through a bare openai.AsyncOpenAI with a semaphore: no ledger, no parsing."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await client.chat.completions.create(model="scripted", messages=messages(i), max_tokens=1024)  # type: ignore[arg-type]

    await asyncio.gather(*(one(-1 - i) for i in range(concurrency)))
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(count)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.close()
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=60, help="requests per concurrency slot")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4], help="client process counts to compare")
    args = parser.parse_args()
    proc, url = start_server(args.latency_s)
    print(f"scripted server {url}, latency {args.latency_s * 1000:.0f} ms; {args.rounds} requests per slot; "
          f"{os.cpu_count()} cores for client and server")  # fmt: skip
    print(f"{'C':>4} {'ceiling/s':>10} {'client':>16} {'req/s':>7} {'ratio':>6} {'vs bare':>7} "
          f"{'CPU ms/call':>11} {'server CPU ms':>13}")  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for c in args.concurrency:
                count = c * args.rounds
                ceiling = c / args.latency_s
                bare_wall, bare_cpu = asyncio.run(run_baseline(url, c, count))
                rows = [("bare openai", bare_wall, bare_cpu, 0.0)]
                for p in (p for p in args.processes if c % p == 0):
                    server_cpu_s = process_cpu_s(proc.pid)
                    wall, cpu = run_processes(url, c, count, Path(tmp) / f"calls-{c}-{p}.sqlite", p)
                    rows.append((f"llm x{p} proc", wall, cpu, process_cpu_s(proc.pid) - server_cpu_s))
                for name, wall, cpu, server_cpu_s in rows:
                    server = f"{1000 * server_cpu_s / count:>13.2f}" if server_cpu_s else f"{'':>13}"
                    print(f"{c:>4} {ceiling:>10.1f} {name:>16} {count / wall:>7.1f} {count / wall / ceiling:>6.3f} "
                          f"{bare_wall / wall:>7.3f} {1000 * cpu / count:>11.2f} {server}")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
