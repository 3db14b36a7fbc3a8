"""Throughput of llm.LLMClient against the scripted loopback server with a fixed latency per request.

For each concurrency C the ceiling is C / latency requests per second. Printed per C: requests/s of
LLMClient.ask (ledger on disk, structured output, parsing) and of bare openai.AsyncOpenAI calls (the
baseline, same process, same server), their ratio to the ceiling, and client CPU time per call.
Target: >= 0.95 of the ceiling at C = 64.

Usage: .venv/bin/python bench/generate.py [--latency-s 0.2] [--rounds 8] [--concurrency 1 16 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longdocvqa.llm import LLMClient  # noqa: E402
from longdocvqa.recipe import EndpointConfig  # noqa: E402
from longdocvqa.records import QA  # noqa: E402

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


async def run_client(url: str, concurrency: int, count: int, ledger: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for `count` LLMClient.ask calls at `concurrency`."""
    ep = EndpointConfig(base_url=url, model="scripted", api_key_env=None, max_concurrency=concurrency, max_retries=0)
    client = LLMClient(ep, ledger)
    offset = int(time.time_ns() % 1_000_000_000)  # fresh prompts: nothing is replayed from the ledger
    warm = [client.ask(messages(-offset - i), QA, template_id="bench@v1", task="bench") for i in range(concurrency)]
    await asyncio.gather(*warm)  # open every connection first: the ceiling is a steady-state figure
    wall, cpu = time.perf_counter(), time.process_time()
    answers = await asyncio.gather(
        *(client.ask(messages(offset + i), QA, template_id="bench@v1", task="bench") for i in range(count))
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.aclose()
    assert all(a.ok for a in answers), {a.reason for a in answers}
    return wall, cpu


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
    parser.add_argument("--rounds", type=int, default=20, help="requests per concurrency slot")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    proc, url = start_server(args.latency_s)
    print(f"scripted server {url}, latency {args.latency_s * 1000:.0f} ms; {args.rounds} requests per slot")
    print(f"{'C':>4} {'ceiling/s':>10} {'llm.py/s':>9} {'ratio':>6} {'bare/s':>8} {'ratio':>6} "
          f"{'llm.py/bare':>11} {'CPU ms/call':>11} {'bare CPU ms':>11} {'server CPU ms':>13}")  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for c in args.concurrency:
                count = c * args.rounds
                ceiling = c / args.latency_s
                server_cpu_s = process_cpu_s(proc.pid)
                wall, cpu = asyncio.run(run_client(url, c, count, Path(tmp) / f"calls-{c}.sqlite"))
                server_cpu_s = process_cpu_s(proc.pid) - server_cpu_s
                bare_wall, bare_cpu = asyncio.run(run_baseline(url, c, count))
                rps, bare_rps = count / wall, count / bare_wall
                print(f"{c:>4} {ceiling:>10.1f} {rps:>9.1f} {rps / ceiling:>6.3f} {bare_rps:>8.1f} "
                      f"{bare_rps / ceiling:>6.3f} {rps / bare_rps:>11.3f} {1000 * cpu / count:>11.2f} "
                      f"{1000 * bare_cpu / count:>11.2f} {1000 * server_cpu_s / (count + 1):>13.2f}")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
