"""Throughput of one LLMClient over one or two loopback servers (endpoint.base_url as a list).

Each scripted server runs in its own process with a fixed latency per request. Rows, all with the same number of
requests:
- baseline: one server, max_concurrency 2C (ceiling 2C / latency);
- two servers, max_concurrency C each (same ceiling): the cost of least-outstanding routing over two servers;
- two URLs of which one refuses every connection, C each (ceiling C / latency, the healthy server alone): the
  cost of draining a dead server, its requests moved to the other.
Printed: requests/s, ratio to the ceiling, client CPU ms per call, and the requests each URL was sent.

Usage: .venv/bin/python bench/endpoints.py [--latency-s 0.2] [--concurrency 16] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_generate", ROOT / "bench" / "generate.py")
assert _spec is not None and _spec.loader is not None
bench_generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_generate)  # start_server and messages, as bench/generate.py uses them

from longdocvqa.core.recipe import EndpointConfig  # noqa: E402
from longdocvqa.core.records import QA  # noqa: E402
from longdocvqa.llm import LLMClient  # noqa: E402

DEAD_URL = "http://127.0.0.1:1/v1"  # nothing listens on port 1


async def run(urls: list[str], concurrency: int, count: int, ledger: Path) -> tuple[float, float, dict[str, Any]]:
    """(wall seconds, CPU seconds, per-URL counters) for `count` fresh asks at `concurrency` per server."""
    ep = EndpointConfig(base_url=urls, model="scripted", api_key_env=None, max_concurrency=concurrency)
    client = LLMClient(ep, ledger)
    offset = time.time_ns() % 10**12
    asks = (client.ask(bench_generate.messages(offset + i), QA, template_id="bench@v1", task="bench")
            for i in range(count))  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    answers = await asyncio.gather(*asks)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.aclose()
    assert all(a.ok for a in answers), {a.reason for a in answers}
    return wall, cpu, client.router.usage()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16, help="C: requests in flight per server")
    parser.add_argument("--rounds", type=int, default=20, help="requests per slot of the 2C baseline")
    args = parser.parse_args()
    servers = [bench_generate.start_server(args.latency_s) for _ in range(2)]
    (_, one), (_, two) = servers
    c, count = args.concurrency, 2 * args.concurrency * args.rounds
    cases = [("1 server, 2C", [one], 2 * c, 2 * c), ("2 servers, C each", [one, two], c, 2 * c),
             ("2 URLs, 1 refused, C each", [DEAD_URL, one], c, c)]  # fmt: skip
    print(f"latency {args.latency_s * 1000:.0f} ms, C = {c}, {count} requests per row")
    print(f"{'case':>26} {'ceiling/s':>10} {'req/s':>7} {'ratio':>6} {'CPU ms/call':>11}  requests per URL")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run([one, two], c, 4 * c, Path(tmp) / "warm.sqlite"))  # imports, schemas: not in row 1
            for index, (name, urls, per_server, in_flight) in enumerate(cases):
                wall, cpu, usage = asyncio.run(run(urls, per_server, count, Path(tmp) / f"calls-{index}.sqlite"))
                ceiling = in_flight / args.latency_s
                sent = [f"{u['requests']} ({u['failures']} failed)" for u in usage.values()]
                print(f"{name:>26} {ceiling:>10.1f} {count / wall:>7.1f} {count / wall / ceiling:>6.3f} "
                      f"{1000 * cpu / count:>11.2f}  {', '.join(sent)}")  # fmt: skip
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
