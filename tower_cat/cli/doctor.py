"""`tower-cat doctor`: what a user needs to know before a job — backends, GPUs, cuBLAS, memory, the model.

Every check is a plain function returning data, so ``--json`` and the text report say the same thing and tests
read the JSON. Nothing here loads model weights: `--model` reads the folder's sidecar, config and model.bin
headers and asks the engine which defaults it would pick on this machine.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import click

# module -> distribution (for the version) and what it is for
BACKENDS = {
    "ctranslate2": ("ctranslate2", "the engine (CPU and GPU)"),
    "torch": ("torch", "the transformers backend, fine-tuning, COMET"),
    "transformers": ("transformers", "tokenizers, chat templates, the reference backend"),
    "comet": ("unbabel-comet", "COMET quality estimation"),
}


def check_backends() -> dict[str, dict[str, Any]]:
    """Import each backend (a real import: a broken install shows here, not in the middle of a job)."""
    found: dict[str, dict[str, Any]] = {}
    for module, (dist, purpose) in BACKENDS.items():
        entry: dict[str, Any] = {"purpose": purpose}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(module)
            entry["ok"] = True
        except Exception as exc:  # noqa: BLE001 - any import failure is the finding
            entry["ok"] = False
            entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        try:
            entry["version"] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            entry["version"] = None
        found[module] = entry
    return found


def check_cpu() -> dict[str, Any]:
    from tower_cat.devices import probe_device

    facts = probe_device("cpu")
    return {"cores": facts.cores, "name": facts.name, "memory_total": facts.total_memory,
            "memory_available": facts.free_memory, "compute_types": sorted(facts.compute_types)}


def check_cuda(backends: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """GPUs as CTranslate2 and torch see them, their memory and compute types, and cuBLAS for CTranslate2."""
    from tower_cat.devices import CUBLAS, gpu_memory, load_cublas, pip_cublas_dirs

    out: dict[str, Any] = {"ctranslate2_devices": None, "torch_devices": None, "torch_cuda": None, "gpus": []}
    if backends["ctranslate2"]["ok"]:
        import ctranslate2

        try:
            out["ctranslate2_devices"] = ctranslate2.get_cuda_device_count()
        except Exception as exc:  # noqa: BLE001
            out["ctranslate2_error"] = str(exc)
    if backends["torch"]["ok"]:
        import torch

        out["torch_cuda"] = torch.version.cuda  # None: a CPU build of torch
        try:
            out["torch_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception as exc:  # noqa: BLE001
            out["torch_error"] = str(exc)
    memories = gpu_memory("transformers" if backends["torch"]["ok"] else "ct2")
    count = max(out["ctranslate2_devices"] or 0, out["torch_devices"] or 0, len(memories))
    for i in range(count):
        gpu: dict[str, Any] = {"index": i}
        if i < len(memories):
            gpu.update(name=memories[i].name, memory_total=memories[i].total, memory_free=memories[i].free)
        if out["ctranslate2_devices"] and i < out["ctranslate2_devices"]:
            import ctranslate2

            gpu["compute_types"] = sorted(ctranslate2.get_supported_compute_types("cuda", i))
        out["gpus"].append(gpu)
    where, tried = load_cublas()
    out["cublas"] = {"library": CUBLAS, "ok": where is not None, "where": where, "detail": tried,
                     "pip_dirs": [str(d) for d in pip_cublas_dirs()]}
    return out


def check_model(model_dir: Path, device: str) -> dict[str, Any]:
    """The model's family and context, its size from model.bin, and the defaults the engine would pick here."""
    from tower_cat.engine import Engine

    engine = Engine.load(model_dir, device=device, cache=None)  # no weights are loaded
    facts = engine.model_facts
    budget = engine.batch_budget
    out: dict[str, Any] = {
        "path": str(model_dir), "family": engine.family, "architecture": engine.info.architecture,
        "context_length": engine.context_length, "end_tokens": engine.end_tokens,
        "quantization": engine.info.quantization,
        "device": engine.device, "device_index": engine.device_index,
        "compute_type": engine.compute_type, "compute_type_reason": engine.compute_type_reason,
        "threads": engine.threads, "replicas": engine.replicas,
        "max_batch_tokens": budget.max_batch_tokens, "max_batch_size": budget.max_batch_size,
        "batch_reason": budget.reason, "preferred_chunk": engine.preferred_chunk, "notes": list(engine.info.notes),
    }
    if facts is not None:
        out.update(parameters=facts.parameters, stored_type=facts.stored_type, layers=facts.layers,
                   hidden_size=facts.hidden_size, weight_bytes=facts.weight_bytes(engine.compute_type))
    engine.close()
    return out


def problems_of(report: dict[str, Any]) -> list[str]:
    """What blocks or slows a job, each with what to do."""
    found = []
    for name, entry in report["backends"].items():
        if not entry["ok"] and name in ("ctranslate2", "transformers"):
            found.append(f"{name} does not import ({entry.get('error')}): reinstall tower-cat's dependencies")
    cuda = report["cuda"]
    smi_gpus = [g for g in cuda["gpus"] if g.get("name")]
    if smi_gpus and not cuda["ctranslate2_devices"]:
        found.append(f"{len(smi_gpus)} GPU(s) present but CTranslate2 sees none: jobs run on the CPU (check the "
                     "NVIDIA driver and CUDA_VISIBLE_DEVICES)")
    if (cuda["ctranslate2_devices"] or 0) > 0 and not cuda["cublas"]["ok"]:
        found.append(f"CTranslate2 needs {cuda['cublas']['library']} on the GPU and it does not load: "
                     "pip install nvidia-cublas-cu12")
    if smi_gpus and cuda["torch_devices"] == 0 and cuda["torch_cuda"] is None:
        found.append("torch is a CPU build: --backend transformers, fine-tuning and COMET run on the CPU "
                     "(install torch's CUDA build for GPU use)")
    model = report.get("model")
    if model and model.get("error"):
        found.append(model["error"])
    return found


def collect(model_dir: Path | None = None, device: str = "auto") -> dict[str, Any]:
    try:
        version = importlib.metadata.version("tower-cat")
    except importlib.metadata.PackageNotFoundError:
        version = None
    backends = check_backends()
    report: dict[str, Any] = {
        "tower_cat": version, "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "backends": backends, "cpu": check_cpu(), "cuda": check_cuda(backends),
    }
    if model_dir is not None:
        from tower_cat.errors import TowerCatError

        try:
            report["model"] = check_model(model_dir, device)
        except TowerCatError as exc:
            report["model"] = {"path": str(model_dir), "error": str(exc)}
    report["problems"] = problems_of(report)
    return report


def _gib(n: int | None) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n else "?"


def render(report: dict[str, Any]) -> str:
    lines = [f"tower-cat {report['tower_cat'] or '(not installed)'}, Python {report['python']}, "
             f"{report['platform']}", "backends:"]
    for name, entry in report["backends"].items():
        state = "ok" if entry["ok"] else f"FAILS: {entry.get('error')}"
        lines.append(f"  {name:<13} {entry['version'] or '-':<14} {state}  ({entry['purpose']})")
    cpu = report["cpu"]
    lines.append(f"CPU: {cpu['cores']} core(s), {_gib(cpu['memory_available'])} of {_gib(cpu['memory_total'])} "
                 f"available; CTranslate2 types: {', '.join(cpu['compute_types']) or '?'}")
    cuda = report["cuda"]
    torch_note = "" if cuda["torch_cuda"] or cuda["torch_devices"] is None else " (torch is a CPU build)"
    lines.append(f"CUDA: CTranslate2 sees {cuda['ctranslate2_devices'] if cuda['ctranslate2_devices'] is not None else '?'} "
                 f"GPU(s), torch sees {cuda['torch_devices'] if cuda['torch_devices'] is not None else '?'}"
                 f"{torch_note}")
    for gpu in cuda["gpus"]:
        lines.append(f"  GPU {gpu['index']}: {gpu.get('name', '?')}, {_gib(gpu.get('memory_free'))} free of "
                     f"{_gib(gpu.get('memory_total'))}; types: {', '.join(gpu.get('compute_types', [])) or '?'}")
    cublas = cuda["cublas"]
    needed = "" if cuda["ctranslate2_devices"] else " (needed only by CTranslate2 on a GPU)"
    lines.append(f"{cublas['library']}: " + (f"loads ({cublas['where']})" if cublas["ok"] else
                                             f"not found{needed}"))
    model = report.get("model")
    if model and not model.get("error"):
        size = (f", {model['parameters'] / 1e9:.2f} B parameters stored as {model['stored_type'] or '?'}"
                if "parameters" in model else "")
        lines.append(f"model: {model['path']}: {model['family']} ({model['architecture']}), context "
                     f"{model['context_length']} tokens{size}")
        lines.append(f"  defaults here: {model['device']}, {model['compute_type_reason']}")
        lines.append(f"  batches: {model['batch_reason']}; {model['replicas']} replica(s) x {model['threads']} "
                     f"thread(s)")
        for note in model["notes"]:
            lines.append(f"  note: {note}")
    lines.append("problems: " + ("none" if not report["problems"] else ""))
    lines.extend(f"  - {p}" for p in report["problems"])
    return "\n".join(lines)


@click.command("doctor")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Also check this model folder: family, context length, size and the defaults chosen here.")
@click.option("--device", default="auto", show_default=True, help="Device for the --model defaults.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(model_dir: Path | None, device: str, as_json: bool) -> int:
    """Check backends, GPUs, cuBLAS, memory and (with --model) a model folder. Exit 1 when something blocks."""
    report = collect(model_dir, device)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo(render(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(doctor())
