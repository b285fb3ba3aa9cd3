"""OpenAI-door load benchmark: N concurrent `openai` clients against `tower-cat serve` on 127.0.0.1.

A tiny random Llama is the model (what is measured is the server: micro-batching, latency, errors, not
translation quality). Each client is the official ``openai.AsyncOpenAI`` pointed at the server; half send raw
chat, half send a plain "Translate from English to German." pair (routed through the translation core), so
both paths share the engine's batcher. Bounded: every round has a deadline.

    .venv/bin/python bench/server_load.py                      # 50 clients, 2 rounds
    .venv/bin/python bench/server_load.py --clients 100 --rounds 3 --max-tokens 16

Prints per round: wall time, p50/p95/max latency, errors, model jobs, Engine.generate calls and the coalescing
ratio (requests per engine call), and the largest batch the worker coalesced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


async def _round(url: str, clients: int, max_tokens: int, deadline: float) -> tuple[list[float], list[str]]:
    import httpx
    import openai

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    http = httpx.AsyncClient(limits=limits, timeout=deadline)
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, http_client=http)

    async def one(i: int) -> tuple[float, str | None]:
        if i % 2:
            messages = [{"role": "system", "content": "Translate the following text from English to German."},
                        {"role": "user", "content": f"Request {i}: the printer {i % 7} is out of paper."}]
        else:
            messages = [{"role": "user", "content": f"Question {i}: what is a translation memory?"}]
        t0 = time.perf_counter()
        try:
            r = await client.chat.completions.create(model="tower", messages=messages, max_tokens=max_tokens)
            error = None if r.choices and isinstance(r.choices[0].message.content, str) else "empty answer"
        except Exception as exc:  # noqa: BLE001 - counted and reported
            error = f"{type(exc).__name__}: {exc}"
        return time.perf_counter() - t0, error

    try:
        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(clients))), timeout=deadline)
    finally:
        await http.aclose()
    return [t for t, _ in results], [e for _, e in results if e]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=12)
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds allowed per round")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from tower_cat.adapters.app import create_app
    from tower_cat.adapters.cli import BackgroundServer
    from tower_cat.adapters.service import ServerConfig, Service
    from tower_cat.engine import Engine
    from tower_cat.testing import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_model(Path(tmp) / "llama", "llama")
        engine = Engine.load(tiny.ct2_path, device="cpu", threads=args.threads)
        service = Service(engine, ServerConfig(max_new_tokens=args.max_tokens))
        try:
            with BackgroundServer(create_app(service)) as server:
                print(f"{args.clients} concurrent openai clients, {args.rounds} rounds, max_tokens {args.max_tokens}, "
                      f"engine {engine.backend_name}/{engine.compute_type} on {engine.device}")
                print(f"{'round':>5} {'wall s':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'errors':>6} "
                      f"{'jobs':>5} {'generate calls':>14} {'req/call':>8} {'max batch':>9}")
                for rnd in range(1, args.rounds + 1):
                    stats = service.batcher.stats
                    jobs0, calls0 = stats.jobs, stats.generate_calls
                    t0 = time.perf_counter()
                    lat, errors = asyncio.run(_round(server.url, args.clients, args.max_tokens, args.deadline))
                    wall = time.perf_counter() - t0
                    lat.sort()
                    jobs, calls = stats.jobs - jobs0, stats.generate_calls - calls0
                    p50, p95 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.95))]
                    print(f"{rnd:>5} {wall:>7.2f} {p50 * 1000:>7.0f} {p95 * 1000:>7.0f} {lat[-1] * 1000:>7.0f} "
                          f"{len(errors):>6} {jobs:>5} {calls:>14} {jobs / max(calls, 1):>8.1f} "
                          f"{stats.max_coalesced_jobs:>9}")
                    for e in errors[:5]:
                        print("   error:", e)
        finally:
            service.close()
            engine.close()


if __name__ == "__main__":
    main()
