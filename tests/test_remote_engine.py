"""The remote backend against a real third-party OpenAI-compatible server: llama.cpp's (llama-cpp-python) on
127.0.0.1, serving a GGUF that llama.cpp's own converter made from our tiny Hugging Face Llama.

Skips with the reason when llama-cpp-python or its source distribution (for the converter) is missing:
``make remote-deps`` installs both (the wheel builds from source once, ~4 minutes, then pip's cache reuses it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tower_cat import formats
from tower_cat.engine import Engine, GenerationCache, GenerationOptions
from tower_cat.core import quick_prompt
from tower_cat.engine_remote import RemoteEngineError, RemoteOptions
from tower_cat.testing_gguf import LlamaServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed (make remote-deps)")


@pytest.fixture(scope="module")
def gguf_model(tiny_llama, tmp_path_factory):
    from tower_cat.testing_gguf import convert_to_gguf, converter_dir

    conv = converter_dir()
    if conv is None:
        pytest.skip("llama.cpp's converter is not there (.cache/sdist: make remote-deps)")
    return convert_to_gguf(Path(tiny_llama.hf_path), tmp_path_factory.mktemp("gguf") / "tiny.gguf", conv)


@pytest.fixture(scope="module")
def llama_server(gguf_model):
    server = LlamaServer(gguf_model).start()
    yield server
    server.stop()


PROMPTS = [("Open the file.", "en", "de"), ("Save your notes before you close the app.", "en", "de"),
           ("The sync finished.", "en", "pt")]


def _remote(url: str, **kw) -> RemoteOptions:
    # llama-cpp-python's server decodes one request at a time; two in flight keep it busy
    return RemoteOptions(endpoint=url, **{"max_concurrency": 2, "timeout": 60, "retries": 2, "backoff": 0.1, **kw})


def test_greedy_output_equals_llama_cpp_direct(tiny_llama, gguf_model, llama_server):
    from llama_cpp import Llama

    engine = Engine.load(tiny_llama.ct2_path, backend="openai", remote=_remote(llama_server.url))
    assert engine.backend_name == "openai" and engine.backend.model == "tiny-tower"
    prompts = [quick_prompt(engine, *p) for p in PROMPTS]
    opts = GenerationOptions(max_new_tokens=24)
    remote = engine.generate(prompts, opts)
    direct = Llama(model_path=str(gguf_model), n_ctx=1024, n_threads=1, verbose=False)
    # llama-cpp-python's server takes text prompts only (it refuses token ids): the backend found that out
    assert engine.backend._text_prompts
    for prompt, gen in zip(prompts, remote):
        ids = list(engine.render(prompt).ids)
        assert ids.count(engine.tokenizer.bos_token_id) == 1 and ids[0] == engine.tokenizer.bos_token_id
        text = engine.backend._text(ids)
        # the server tokenizes that text into exactly the token ids we rendered (one BOS, specials as specials)
        assert direct.tokenize(text.encode("utf-8"), add_bos=True, special=True) == ids
        out = direct.create_completion(prompt=text, max_tokens=24, temperature=0.0, repeat_penalty=1.0,
                                       stop=engine.end_tokens)["choices"][0]
        assert gen.text == out["text"]
        assert gen.truncated == (out["finish_reason"] == "length")
        assert gen.log_prob is not None and gen.log_prob < 0
    assert engine.backend.requests >= len(prompts)
    engine.close()


def test_file_translates_end_to_end_and_scores(tiny_llama, llama_server, tmp_path):
    from tower_cat.pipeline import PipelineOptions, run_files

    engine = Engine.load(tiny_llama.ct2_path, backend="openai", remote=_remote(llama_server.url),
                         cache=tmp_path / "cache.sqlite")
    src, out = SAMPLES / "tower-notes.en-de.xlf", tmp_path / "out.xlf"
    summary = run_files("translate", [src], [out], engine, options=PipelineOptions(max_new_tokens=16))
    assert not summary.failed, summary.to_json()
    doc = {u.id: u for u in formats.load(out).units}
    results = summary.results
    assert sum(1 for r in results if r.action == "mt") > 0 and engine.stats.prompts_generated > 0
    for r in results:  # every unit: a target written, or a reason it was not (random weights break codes)
        if r.action in ("mt", "tm"):
            assert doc[r.unit].target is not None
        else:
            assert r.reason, r
    # log-prob QE through the server (echo + logprobs)
    prompt = quick_prompt(engine, "Open the file.", "en", "de")
    (lp,) = engine.score([prompt], ["Datei"])
    assert lp < 0
    engine.close()


def test_server_killed_mid_job_gives_a_clear_error_and_the_job_resumes(tiny_llama, gguf_model, tmp_path):
    from tower_cat.errors import TowerCatError
    from tower_cat.pipeline import PipelineOptions, run_files

    server = LlamaServer(gguf_model).start()
    cache = tmp_path / "cache.sqlite"
    src, out = SAMPLES / "tower-notes.en-de.xlf", tmp_path / "out.xlf"
    remote = _remote(server.url, retries=1, backoff=0.05, timeout=20)
    opts = PipelineOptions(max_new_tokens=12, chunk_size=4)
    try:
        engine = Engine.load(tiny_llama.ct2_path, backend="openai", remote=remote, cache=cache)
        seen = []

        def kill_after_first_chunk(done: int, total: int) -> None:
            seen.append(done)
            if len(seen) == 1:
                server.kill()

        with pytest.raises(TowerCatError) as err:
            run_files("translate", [src], [out], engine, options=opts, progress=kill_after_first_chunk)
        assert isinstance(err.value, RemoteEngineError)
        assert server.url in str(err.value) and "resumes from the generation cache" in str(err.value)
        assert not out.exists()  # nothing half-written
        assert not list(tmp_path.glob(".out*.tmp"))
        engine.close()
        first = len(GenerationCache(cache))
        assert first > 0  # the chunks that finished are kept

        server.start()  # same port, same model: same cache key
        engine = Engine.load(tiny_llama.ct2_path, backend="openai", remote=remote, cache=cache)
        summary = run_files("translate", [src], [out], engine, options=opts)
        assert not summary.failed
        assert engine.stats.cache_hits >= first
        engine.close()
        resumed = out.read_bytes()

        # the same job without interruption, fresh cache: byte-identical output
        engine = Engine.load(tiny_llama.ct2_path, backend="openai", remote=remote, cache=tmp_path / "fresh.sqlite")
        run_files("translate", [src], [tmp_path / "fresh.xlf"], engine, options=opts)
        engine.close()
        assert (tmp_path / "fresh.xlf").read_bytes() == resumed
    finally:
        server.stop()


def test_client_errors_are_clear_and_not_retried(tiny_llama, llama_server):
    with pytest.raises(RemoteEngineError, match="does not serve 'no-such-model'"):
        Engine.load(tiny_llama.ct2_path, backend="openai", endpoint=llama_server.url, served_model="no-such-model")
    with pytest.raises(RemoteEngineError, match="still failing after 2 attempts"):
        Engine.load(tiny_llama.ct2_path, backend="openai",
                    remote=RemoteOptions(endpoint=f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01))


def test_cli_translate_with_backend_openai(tiny_llama, llama_server, tmp_path):
    from click.testing import CliRunner

    from tower_cat.cli import cli

    out = tmp_path / "out.po"
    args = ["translate", str(SAMPLES / "tower-notes.de.po"), "-o", str(out), "--model", str(tiny_llama.ct2_path),
            "--source", "en", "--backend", "openai", "--endpoint", llama_server.url, "--max-new-tokens", "8",
            "--cache", str(tmp_path / "cache.sqlite"), "--json", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert out.is_file() and formats.load(out).units
    i = args.index("--endpoint")
    r = CliRunner().invoke(cli, args[:i] + args[i + 2:], env={"TOWER_CAT_ENDPOINT": None})  # no endpoint
    assert r.exit_code != 0 and "--endpoint" in r.output


def test_cli_qe_logprob_and_llm_and_refine_through_the_server(tiny_llama, llama_server, tmp_path):
    import json

    from click.testing import CliRunner

    from tower_cat.cli import cli

    src = SAMPLES / "tower-notes.en-de.xlf"
    for backend in ("logprob", "llm"):
        r = CliRunner().invoke(cli, ["qe", str(src), "--backend", backend, "--model", str(tiny_llama.ct2_path),
                                     "--endpoint", llama_server.url, "--json", "--no-spans"][:-1 if backend ==
                                                                                            "logprob" else None])
        assert r.exit_code == 0, r.output
        data = json.loads(r.output)
        segs = data["files"][0]["segments"]
        assert segs and all(s["score"] is None or 0 <= s["score"] <= 100 for s in segs)
    r = CliRunner().invoke(cli, ["refine", "--model", str(tiny_llama.ct2_path), "-s", "en", "-t", "de",
                                 "--backend", "openai", "--endpoint", llama_server.url, "--max-new-tokens", "8",
                                 "--no-cache", "--json", "Open the file."])
    assert r.exit_code == 0, r.output


def test_serve_with_the_model_on_a_remote_server(tiny_llama, llama_server, tmp_path):
    """`tower-cat serve --endpoint`: every door of our server, the model on llama.cpp's server."""
    import subprocess
    import sys
    import time

    import httpx

    from tower_cat.testing_gguf import free_port

    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", "from tower_cat.cli import main; main()", "serve", "--model",
                             str(tiny_llama.ct2_path), "--endpoint", llama_server.url, "--port", str(port),
                             "--max-new-tokens", "8", "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        r = httpx.post(url + "/v2/translate", data={"text": ["Open the file."], "source_lang": "EN",
                                                    "target_lang": "DE"}, timeout=120)
        assert r.status_code == 200, r.text
        assert isinstance(r.json()["translations"][0]["text"], str)
    finally:
        proc.terminate()
        proc.wait(20)
