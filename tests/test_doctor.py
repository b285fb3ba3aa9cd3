"""`tower-cat doctor` on this machine (CPU), against what the libraries themselves report."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys

import ctranslate2
import pytest
import transformers

from tests.cli_runner import run_cli
from tower_cat.cli.doctor import problems_of, render
from tower_cat.devices import CUBLAS, cpu_cores, load_cublas, read_ct2_model_facts


def _run(argv, capsys) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


@pytest.fixture(scope="module")
def report(tiny_llama):
    """One doctor run (it imports every backend, COMET included: seconds)."""
    from tower_cat.cli.doctor import collect

    return collect(tiny_llama.ct2_path, "cpu")


def _cublas_loads() -> bool:
    try:
        ctypes.CDLL(CUBLAS)
        return True
    except OSError:
        return False


def test_doctor_reports_what_the_libraries_say(report, tiny_llama):
    backends = report["backends"]
    assert backends["ctranslate2"]["ok"] and backends["ctranslate2"]["version"] == ctranslate2.__version__
    assert backends["transformers"]["ok"] and backends["transformers"]["version"] == transformers.__version__
    assert set(backends) == {"ctranslate2", "torch", "transformers", "comet"}
    assert report["cpu"]["cores"] == cpu_cores()
    assert report["cpu"]["compute_types"] == sorted(ctranslate2.get_supported_compute_types("cpu"))
    assert 0 < report["cpu"]["memory_available"] <= report["cpu"]["memory_total"]
    cuda = report["cuda"]
    assert cuda["ctranslate2_devices"] == ctranslate2.get_cuda_device_count()
    assert cuda["cublas"]["library"] == "libcublas.so.12"
    assert cuda["cublas"]["ok"] == (_cublas_loads() or load_cublas()[0] is not None)
    model = report["model"]
    assert (model["family"], model["architecture"]) == ("tower_instruct", "llama")
    assert model["context_length"] == json.loads((tiny_llama.hf_path / "config.json").read_text())[
        "max_position_embeddings"]
    assert model["parameters"] == read_ct2_model_facts(tiny_llama.ct2_path, 0).parameters
    assert model["device"] == "cpu" and model["compute_type"] == "int8"
    assert (model["max_batch_tokens"], model["max_batch_size"]) == (8192, 64)
    if cuda["ctranslate2_devices"] == 0:
        assert not any("cublas" in p for p in report["problems"])  # not needed without a GPU


def test_doctor_text_and_json_commands(tiny_llama, capsys):
    code, out, _ = _run(["doctor", "--json", "--model", str(tiny_llama.ct2_path), "--device", "cpu"], capsys)
    data = json.loads(out)
    assert code == (1 if data["problems"] else 0)
    assert data["model"]["family"] == "tower_instruct"
    code, text, _ = _run(["doctor", "--model", str(tiny_llama.ct2_path), "--device", "cpu"], capsys)
    assert "ctranslate2" in text and ctranslate2.__version__ in text
    assert "libcublas.so.12" in text and "tower_instruct (llama)" in text
    assert "8192 tokens / 64 prompts" in text
    assert text.strip().splitlines()[-1].startswith(("problems: none", "  - "))


def test_doctor_names_a_broken_model_folder(tmp_path, capsys):
    code, out, _ = _run(["doctor", "--json", "--model", str(tmp_path)], capsys)
    data = json.loads(out)
    assert code == 1
    assert data["model"]["error"].startswith(str(tmp_path))
    assert any(str(tmp_path) in p for p in data["problems"])


def _report(**cuda) -> dict:
    base = {"ctranslate2_devices": 0, "torch_devices": 0, "torch_cuda": "12.8", "gpus": [],
            "cublas": {"library": CUBLAS, "ok": True, "where": "x", "detail": "", "pip_dirs": []}}
    base.update(cuda)
    ok = {"ok": True, "version": "1", "purpose": "p"}
    return {"tower_cat": "0", "python": "3", "platform": "Linux", "backends": dict.fromkeys(
        ["ctranslate2", "torch", "transformers", "comet"], ok), "cpu": {
        "cores": 16, "name": "", "memory_total": 1 << 37, "memory_available": 1 << 36, "compute_types": []},
        "cuda": base}


def test_problems_say_what_to_do():
    gpu = {"index": 0, "name": "NVIDIA H200", "memory_total": 150 << 30, "memory_free": 140 << 30,
           "compute_types": ["bfloat16", "float16"]}
    assert problems_of(_report()) == []
    missing = _report(ctranslate2_devices=1, torch_devices=1, gpus=[gpu],
                      cublas={"library": CUBLAS, "ok": False, "where": None, "detail": "not found", "pip_dirs": []})
    problems = problems_of(missing)
    assert len(problems) == 1 and "pip install nvidia-cublas-cu12" in problems[0]
    unseen = problems_of(_report(gpus=[gpu], torch_devices=0, torch_cuda=None))
    assert any("CTranslate2 sees none" in p for p in unseen) and any("CPU build" in p for p in unseen)
    text = render({**missing, "problems": problems})
    assert "GPU 0: NVIDIA H200, 140.0 GiB free of 150.0 GiB; types: bfloat16, float16" in text
    assert "libcublas.so.12: not found" in text and "nvidia-cublas-cu12" in text


@pytest.mark.skipif(shutil.which("gcc") is None or _cublas_loads(), reason="needs gcc and no system cuBLAS")
def test_cublas_is_loaded_from_the_pip_wheel_folder(tmp_path):
    """A library named libcublas.so.12 in site-packages/nvidia/cublas/lib (the nvidia-cublas-cu12 layout) is
    found and loaded by full path; a broken one is reported with its path. Runs in a child process so the test
    library never stays loaded here."""
    lib = tmp_path / "site" / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    source = tmp_path / "fake.c"
    source.write_text("int cublas_fake_version(void) { return 12; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcublas.so.12", "-o", str(lib / CUBLAS),
                    str(source)], check=True)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from tower_cat.devices import load_cublas; "
             "where, tried = load_cublas(); print(where); print(tried)")
    env = dict(os.environ, LD_LIBRARY_PATH="")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "site")], capture_output=True, text=True,
                         env=env, check=True).stdout.splitlines()
    assert out[0] == str(lib / CUBLAS) and out[1] == "loaded from the nvidia-cublas-cu12 wheel"
    (lib / CUBLAS).write_bytes(b"not an ELF file")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "site")], capture_output=True, text=True,
                         env=env, check=True).stdout.splitlines()
    assert out[0] == "None" and str(lib / CUBLAS) in out[1]


@pytest.mark.skipif(_cublas_loads(), reason="cuBLAS 12 is installed here")
def test_engine_on_a_gpu_without_cublas_says_how_to_fix_it(monkeypatch):
    from tower_cat import devices
    from tower_cat.engine import _need_cublas
    from tower_cat.errors import ModelError

    monkeypatch.setattr(devices, "pip_cublas_dirs", lambda: [])
    with pytest.raises(ModelError, match="pip install nvidia-cublas-cu12"):
        _need_cublas()
