"""Batch jobs on Ray: a local Ray (two CPU actors) decodes the model batches; the driver does everything else.

The output must be the same bytes as a local run of the same job, and an interrupted Ray job must resume from
the driver's generation cache.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tower_cat.engine import Engine, GenerationCache

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
FILES = [SAMPLES / "tower-notes.en-de.xlf", SAMPLES / "tower-notes.en-pt.xliff", SAMPLES / "tower-notes.de.po"]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=100 * 1024 * 1024)
    yield ray
    ray.shutdown()


def _run(engine, out_dir: Path, progress=None):
    from tower_cat.pipeline import PipelineOptions, run_files

    out_dir.mkdir(exist_ok=True)
    outs = [out_dir / p.name for p in FILES]
    opts = PipelineOptions(max_new_tokens=12, chunk_size=8, source_lang="en")
    return run_files("translate", FILES, outs, engine, options=opts, progress=progress), outs


def test_multi_file_job_on_two_ray_actors_equals_the_local_run(tiny_llama, local_ray, tmp_path):
    from tower_cat.distributed import RayOptions, use_ray

    local = Engine.load(tiny_llama.ct2_path)
    local_summary, local_outs = _run(local, tmp_path / "local")
    local.close()

    engine = use_ray(Engine.load(tiny_llama.ct2_path), RayOptions(actors=2))
    backend = engine.backend
    assert backend.name == "ray" and len(backend.actors) == 2 and engine.parallel == 2
    summary, outs = _run(engine, tmp_path / "ray")
    assert not summary.failed
    for a, b in zip(local_outs, outs):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert summary.totals() == local_summary.totals()
    assert all(backend.batches_per_actor[i] > 0 for i in range(2))  # both actors decoded
    engine.close()


def test_interrupted_ray_job_resumes_from_the_generation_cache(tiny_llama, local_ray, tmp_path):
    from tower_cat.distributed import RayOptions, use_ray

    cache = tmp_path / "cache.sqlite"
    engine = use_ray(Engine.load(tiny_llama.ct2_path, cache=cache), RayOptions(actors=2))
    calls = []

    def stop_after_first_chunk(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(engine, tmp_path / "first", progress=stop_after_first_chunk)
    engine.close()
    kept = len(GenerationCache(cache))
    assert kept > 0
    assert not any((tmp_path / "first").iterdir())  # no output written by the interrupted job

    engine = use_ray(Engine.load(tiny_llama.ct2_path, cache=cache), RayOptions(actors=2))
    summary, outs = _run(engine, tmp_path / "second")
    assert not summary.failed and engine.stats.cache_hits >= kept
    engine.close()

    local = Engine.load(tiny_llama.ct2_path)
    _, local_outs = _run(local, tmp_path / "local")
    for a, b in zip(local_outs, outs):
        assert a.read_bytes() == b.read_bytes()


def test_ray_refuses_a_remote_engine(tiny_llama):
    from tower_cat.distributed import RayError, RayOptions, use_ray

    engine = Engine.load(tiny_llama.ct2_path)
    engine.backend_name = "openai"  # what Engine.load(..., backend="openai") gives
    with pytest.raises(RayError, match="remote already"):
        use_ray(engine, RayOptions(address="auto"))


def test_cli_translate_with_ray(tiny_llama, local_ray, tmp_path):
    from click.testing import CliRunner

    from tower_cat.cli import cli

    outs = []
    for name, extra in (("local", []), ("ray", ["--ray", "auto", "--ray-actors", "2"])):
        out = tmp_path / f"{name}.xlf"
        r = CliRunner().invoke(cli, ["translate", str(FILES[0]), "-o", str(out), "--model", str(tiny_llama.ct2_path),
                                     "--max-new-tokens", "8", "--no-cache", "--no-progress", *extra])
        assert r.exit_code == 0, r.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
