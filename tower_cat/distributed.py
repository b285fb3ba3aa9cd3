"""Batch jobs over a Ray cluster: the same job, its model batches decoded by Ray actors on many machines.

The boundary is the Engine's backend. The driver (the machine that runs ``tower-cat translate --ray``) keeps
everything that knows files, TMs, terms, tags and QA: it loads and saves the documents, looks up the TM and the
glossary, builds and renders the prompts, deduplicates them and keeps the generation cache. Only the rendered
token batches travel: each goes to one :class:`EngineWorker` actor, which holds a local Engine (one per GPU,
or per CPU slot) and returns raw token hypotheses. Batches are dispatched to the least busy actor and their
results come back in order, so progress, the summary and the output are the same as a local run; an
interrupted job resumes from the driver's generation cache without redoing finished batches.

Ray replaces what we would otherwise have to write: scheduling over nodes, placement on GPUs, serialisation,
worker restarts. Start a cluster with ``ray start --head`` (and ``ray start --address HEAD:6379`` on the other
nodes), then ``tower-cat translate ... --ray auto`` on the head; ``--ray local`` starts a private one-machine
Ray for trying it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Iterator

from tower_cat.errors import ModelError


class RayError(ModelError):
    """Ray is missing, the cluster cannot be reached, or an actor failed."""


@dataclass
class RayOptions:
    address: str = "auto"              # "auto" (running cluster), "local" (start one here) or "ray://host:port"
    actors: int | None = None          # default: one per GPU in the cluster, else one per CPU slot
    gpus_per_actor: float = 1.0        # on GPU clusters
    cpus_per_actor: float = 1.0        # on CPU-only clusters
    num_cpus: int | None = None        # for address="local": how many CPUs the private Ray may use
    in_flight_per_actor: int = 2       # batches queued on an actor, so it never waits for the driver


class EngineWorker:
    """A Ray actor holding a local Engine; it decodes token batches and knows nothing else."""

    def __init__(self, model_path: str, engine_kwargs: dict[str, Any]):
        from tower_cat.engine import Engine

        self.engine = Engine.load(model_path, **engine_kwargs)

    def generate(self, batch, opts, max_new: int, end_tokens: list[str], max_batch_tokens: int):
        out = next(iter(self.engine.backend.generate([batch], opts, [max_new], end_tokens, max_batch_tokens)))
        return [[(list(h.tokens), h.log_prob) for h in hyps] for hyps in out]

    def score(self, batch: list[list[str]]) -> list[list[float]]:
        return self.engine.backend.score(batch)

    def generate_all(self, tokens: list[str], opts, max_new: int, end_tokens: list[str]):
        return [(t, i, lp) for t, i, lp in self.engine.backend.stream(tokens, opts, max_new, end_tokens)]

    def ready(self) -> bool:
        return self.engine.backend is not None  # loads the weights now, not on the first batch


class RayBackend:
    """The Engine backend interface (generate / score / stream) over a pool of :class:`EngineWorker` actors."""

    name = "ray"

    def __init__(self, model_path: str, engine_kwargs: dict[str, Any], options: RayOptions | None = None):
        try:
            import ray
        except ImportError as exc:
            raise RayError(f"Ray is not installed ({exc})", hint="pip install 'tower-cat[ray]'") from None
        self.ray = ray
        self.options = options = options or RayOptions()
        if not ray.is_initialized():
            try:
                if options.address == "local":
                    ray.init(num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                else:
                    ray.init(address=options.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayError(f"cannot reach the Ray cluster at {options.address!r}: {exc}",
                               hint="start one with `ray start --head`, or use address='local'",
                               param="ray") from None
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        kwargs = dict(engine_kwargs)
        if gpus:
            n = options.actors or max(1, int(gpus // options.gpus_per_actor))
            actor_opts = dict(num_gpus=options.gpus_per_actor, num_cpus=options.cpus_per_actor)
            kwargs.setdefault("device", "cuda")
        else:
            n = options.actors or max(1, int(resources.get("CPU", 1) // options.cpus_per_actor))
            actor_opts = dict(num_cpus=options.cpus_per_actor)
            kwargs.update(device="cpu", threads=max(1, int(options.cpus_per_actor)), replicas=1)
        kwargs.pop("cache", None)  # the driver caches; workers never do
        remote_cls = ray.remote(**actor_opts)(EngineWorker)
        self.actors = [remote_cls.remote(str(model_path), kwargs) for _ in range(n)]
        try:
            ray.get([a.ready.remote() for a in self.actors])
        except Exception as exc:  # noqa: BLE001 - any actor start failure is reported the same way
            raise RayError(f"the Ray workers could not load the model {model_path}: {exc}",
                           hint="every node needs the model folder at the same path") from None
        self.parallel = n
        self.batches_per_actor = collections.Counter()

    def generate(self, batches: list, opts, max_news: list[int], end_tokens: list[str],
                 max_batch_tokens: int) -> Iterator[list[list[Any]]]:
        from tower_cat.engine import _RawHyp

        ray = self.ray
        busy = collections.Counter()
        pending: collections.deque = collections.deque()
        limit = self.options.in_flight_per_actor * len(self.actors)
        submitted = 0
        for i in range(len(batches)):
            while submitted < len(batches) and len(pending) < limit:
                actor = min(range(len(self.actors)), key=lambda a: busy[a])
                busy[actor] += 1
                self.batches_per_actor[actor] += 1
                ref = self.actors[actor].generate.remote(batches[submitted], opts, max_news[submitted],
                                                         end_tokens, max_batch_tokens)
                pending.append((actor, ref))
                submitted += 1
            actor, ref = pending.popleft()
            try:
                raw = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - an actor died or raised: the job stops here, resumable
                raise RayError(f"a Ray worker failed on batch {i + 1} of {len(batches)}: {exc}",
                               hint="run the job again: finished batches come from the generation cache") from None
            busy[actor] -= 1
            yield [[_RawHyp(list(t), lp) for t, lp in hyps] for hyps in raw]

    def score(self, batch: list[list[str]]) -> list[list[float]]:
        n = len(self.actors)
        parts = [batch[i::n] for i in range(n)]
        refs = [a.score.remote(p) for a, p in zip(self.actors, parts) if p]
        results = self.ray.get(refs)
        out: list[list[float]] = [[] for _ in batch]
        for k, res in enumerate(results):
            for j, r in enumerate(res):
                out[k + j * n] = r
        return out

    def stream(self, tokens, opts, max_new: int, end_tokens: list[str]):
        """Sessions stream one prompt: decoded on one worker and replayed here (no partial tokens over Ray)."""
        yield from self.ray.get(self.actors[0].generate_all.remote(list(tokens), opts, max_new, end_tokens))

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []


def use_ray(engine, options: RayOptions | None = None):
    """Make ``engine`` decode on Ray actors; everything else (rendering, dedup, cache) stays in this process.

    The workers load the same model folder with the engine's own backend and compute type."""
    if engine.backend_name not in ("ct2", "transformers"):
        raise RayError(f"Ray runs local models on the cluster; the {engine.backend_name} backend is remote "
                       "already", hint="use either Ray or the remote backend", param="ray_remote")
    kwargs: dict[str, Any] = dict(backend=engine.backend_name, compute_type="auto")
    if engine.backend_name == "transformers" and engine.hf_model:
        kwargs["hf_model"] = engine.hf_model
    engine.attach_backend(RayBackend(str(engine.path), kwargs, options))
    return engine
