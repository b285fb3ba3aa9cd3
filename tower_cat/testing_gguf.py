"""A GGUF of a tiny Hugging Face model, made by llama.cpp's own converter, for tests against llama.cpp's server.

llama.cpp's converter (``convert_hf_to_gguf.py`` with its ``conversion`` package and ``gguf-py``) is not on
PyPI as a module; it ships in the ``llama-cpp-python`` source distribution. ``make remote-deps`` downloads that
sdist into ``.cache/sdist/``; :func:`converter_dir` unpacks the converter from it once into ``.cache/``.

Our tiny tokenizers are byte-level BPE with GPT-2's pre-tokenizer (``tower_cat.testing.train_tokenizer``).
The converter recognises a BPE pre-tokenizer by the hash of a test string's token ids, which only a published
tokenizer can match, so the conversion runs with ``get_vocab_base_pre`` answering ``"gpt-2"`` — exactly the
pre-tokenizer these tokenizers use — and nothing else changed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SDIST_DIR = ROOT / ".cache" / "sdist"
LLAMA_CPP_PYTHON = "0.3.36"

_DRIVER = """
import sys
sys.path.insert(0, {conv!r})
sys.path.insert(1, {gguf!r})
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = ["convert_hf_to_gguf.py", {model!r}, "--outfile", {out!r}, "--outtype", "f32"]
import runpy
runpy.run_path({script!r}, run_name="__main__")
"""


def converter_dir(cache: Path | None = None) -> Path | None:
    """The unpacked llama.cpp converter folder, or None when the sdist is not there."""
    cache = cache or ROOT / ".cache"
    target = cache / f"llama.cpp-convert-{LLAMA_CPP_PYTHON}"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    sdist = SDIST_DIR / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.is_file():
        return None
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
    tmp = target.with_name(target.name + ".tmp")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and (
            m.name == prefix + "convert_hf_to_gguf.py" or m.name.startswith(prefix + "conversion/")
            or m.name.startswith(prefix + "gguf-py/")) and (m.isfile() or m.isdir())]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(tmp, members=members, filter="data")
    tmp.rename(target)
    return target


def convert_to_gguf(hf_dir: Path, out: Path, converter: Path) -> Path:
    """``hf_dir`` (a tiny Llama/Qwen2 folder) -> ``out`` (GGUF, float32) with llama.cpp's converter."""
    code = _DRIVER.format(conv=str(converter), gguf=str(converter / "gguf-py"), model=str(hf_dir), out=str(out),
                          script=str(converter / "convert_hf_to_gguf.py"))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if run.returncode != 0 or not out.is_file():
        raise RuntimeError(f"GGUF conversion failed:\n{run.stderr[-3000:]}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server in a subprocess, on 127.0.0.1, bounded in time."""

    def __init__(self, model: Path, port: int | None = None, threads: int = 1):
        self.model, self.port, self.threads = model, port or free_port(), threads
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "LlamaServer":
        import httpx

        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "1024", "--n_threads", str(self.threads), "--logits_all", "true",
             "--model_alias", "tiny-tower", "--verbose", "false"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("llama.cpp server exited: " + self.proc.stderr.read().decode()[-2000:])
            try:
                if httpx.get(self.url + "/v1/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama.cpp server did not answer within the time limit")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
