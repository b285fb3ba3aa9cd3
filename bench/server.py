"""Server load benchmark: concurrent mixed requests (DeepL, LibreTranslate, /v1) against `tower-cat serve`'s
application on 127.0.0.1, a tiny random Llama as the model (what is measured is the server: batching,
latency, memory, not translation quality).

    python bench/server.py                    # 200 concurrent requests, 2 rounds
    python bench/server.py --requests 500 --rounds 3

Prints per round: wall time, p50/p95 latency, model jobs, Engine.generate calls and the coalescing ratio
(requests per engine call), CT2 batches, and RSS before/after; the second and later rounds show whether memory
grows with repeated identical load. These figures used to be asserted in tests/test_server.py; they depend on
the machine's speed and load, so they are printed here instead.
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

KEY = "bench-key"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def one_round(url: str, n: int) -> list[tuple[bool, float]]:
    import httpx

    async def one(client: httpx.AsyncClient, i: int) -> tuple[bool, float]:
        text = f"Request number {i}: the printer {i % 7} is out of paper."
        t0 = time.perf_counter()
        if i % 3 == 0:
            r = await client.post("/v2/translate", json={"text": [text], "target_lang": "DE"},
                                  headers={"Authorization": f"DeepL-Auth-Key {KEY}"})
        elif i % 3 == 1:
            r = await client.post("/translate", json={"q": text, "source": "en", "target": "fr"})
        else:
            r = await client.post("/v1/translate", json={"source_lang": "en", "target_lang": "es", "use_tm": False,
                                                         "segments": [f"<b>{text}</b>"]})
        return r.status_code == 200, time.perf_counter() - t0

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        return await asyncio.gather(*(one(client, i) for i in range(n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    args = ap.parse_args()

    from tower_cat.adapters.app import create_app
    from tower_cat.adapters.cli import BackgroundServer
    from tower_cat.adapters.service import ServerConfig, Service
    from tower_cat.engine import Engine
    from tower_cat.testing import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_model(Path(tmp) / "llama", "llama")
        engine = Engine.load(tiny.ct2_path, device="cpu", compute_type="float32", threads=1)
        service = Service(engine, ServerConfig(max_new_tokens=args.max_new_tokens))
        try:
            with BackgroundServer(create_app(service)) as srv:
                print(f"{args.requests} concurrent mixed requests per round (DeepL, LibreTranslate, /v1), "
                      f"tiny llama, max_new_tokens {args.max_new_tokens}")
                print(f"{'round':>5} {'wall s':>7} {'p50 ms':>7} {'p95 ms':>7} {'ok':>5} {'jobs':>5} {'calls':>6} "
                      f"{'req/call':>8} {'batches':>7} {'RSS MB':>15}")
                for rnd in range(1, args.rounds + 1):
                    s0 = (service.batcher.stats.generate_calls, engine.stats.batches, service.batcher.stats.jobs)
                    rss0 = rss_mb()
                    t0 = time.perf_counter()
                    results = asyncio.run(one_round(srv.url, args.requests))
                    wall = time.perf_counter() - t0
                    rss1 = rss_mb()
                    lat = sorted(t for _, t in results)
                    calls = service.batcher.stats.generate_calls - s0[0]
                    batches = engine.stats.batches - s0[1]
                    jobs = service.batcher.stats.jobs - s0[2]
                    print(f"{rnd:>5} {wall:>7.2f} {lat[len(lat) // 2] * 1000:>7.0f} "
                          f"{lat[int(len(lat) * 0.95)] * 1000:>7.0f} {sum(ok for ok, _ in results):>5} {jobs:>5} "
                          f"{calls:>6} {jobs / max(calls, 1):>8.1f} {batches:>7} {rss0:>7.0f} -> {rss1:<5.0f}")
                print(f"max coalesced: {service.batcher.stats.max_coalesced_jobs} requests, "
                      f"{service.batcher.stats.max_coalesced_prompts} prompts in one engine call")
        finally:
            service.close()
            engine.close()


if __name__ == "__main__":
    main()
