"""Device-aware engine defaults: compute type and batch budget from what the device and the model are.

The decisions are pure functions of two small records, :class:`DeviceFacts` (kind, memory, compute types, cores)
and :class:`ModelFacts` (parameters, layers, widths, context), so tests give the facts of an H200, a 16 GB T4 or
a laptop CPU and check the choice without any GPU. The probes that fill the records from the running machine
(`probe_device`, `read_ct2_model_facts`, `hf_model_facts`) are separate and import nothing heavy at module load.

Measured reasons (issue 14: NVIDIA H200, random weights in the Llama shape of TowerInstruct-7B, the project's own
Engine, 128 forced new tokens, CTranslate2 4.8.5) — tokens/s at batch 1 / 16 / 64 / 256:

    CT2 bfloat16        157.2 /   —   / 7 585 / 29 209
    CT2 float16         152.7 / 1 834 / 7 319 /   —
    CT2 int8_bfloat16   151.3 /   —   / 6 494 / 25 806
    CT2 int8_float16    148.2 / 1 664 / 6 613 /   —
    HF transformers bf16 48.5 /   611 / 2 702 /   —

int8 is slower than bfloat16 at every batch size there (dequantising costs more than the halved weight reads
save), so a GPU gets bfloat16 and int8 only when the 16-bit weights leave too little room. The pipeline's file
took 7.3 s at 256 prompts per batch and 7.8 s at 512 (1.26 B Llama shape, same H200): 256 prompts is the cap.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tower_cat.errors import ModelError

log = logging.getLogger(__name__)

GiB = 1 << 30
MiB = 1 << 20

# Bytes per weight and per activation (KV cache) value for each CTranslate2 compute type. int8 on the CPU keeps
# float32 activations; int8_float16/int8_bfloat16 keep 16-bit ones.
WEIGHT_BYTES = {"float32": 4, "int8": 1, "int8_float32": 1, "int8_float16": 1, "int8_bfloat16": 1, "int16": 2,
                "float16": 2, "bfloat16": 2}
ACTIVATION_BYTES = {"float32": 4, "int8": 4, "int8_float32": 4, "int16": 4, "int8_float16": 2,
                    "int8_bfloat16": 2, "float16": 2, "bfloat16": 2}

# GPU compute types, fastest first (H200 numbers in the module docstring). bfloat16 before float16: as fast or
# faster (157 vs 153 tok/s at batch 1, 7 585 vs 7 319 at 64) and no float16 overflow. float16 is for GPUs
# without bfloat16 (before Ampere: T4, V100); the int8 types are for memory, not speed; float32 last.
GPU_COMPUTE_PREFERENCE = ("bfloat16", "float16", "int8_bfloat16", "int8_float16", "int8", "float32")

# On the CPU: int8 (CT2 int8 is 2.3-2.6x HF float32 at batch 16 on the development CPU; CT2 float32 is slower
# than HF there), one single-threaded replica per core, and the batch budget measured with that set-up.
CPU_COMPUTE_TYPE = "int8"
CPU_BATCH_TOKENS = 8192
CPU_BATCH_PROMPTS = 64

GPU_RESERVE = 1 * GiB          # CUDA context, cuBLAS workspace, CT2 allocator slack, per device
GPU_BUDGET_SHARE = 0.5         # share of the memory left after weights + reserve that batches may plan to use
GPU_BATCH_PROMPTS = 256        # measured best on the H200 (512 was slower); the token budget bounds it further
GPU_MIN_BATCH_TOKENS = 4096    # a compute type "fits" when batches of this many tokens (16 prompts of 256) fit too
GPU_UNKNOWN_BATCH_TOKENS = 32768  # GPU whose free memory nobody could read (no nvidia-smi, no torch)


@dataclass(frozen=True)
class DeviceFacts:
    """What the defaults depend on, for the device a model runs on (the tightest one when there are several)."""

    kind: str                                     # "cpu" | "cuda"
    total_memory: int = 0                         # bytes; 0 = unknown
    free_memory: int = 0                          # bytes free before the model loads; 0 = unknown
    compute_types: frozenset[str] = frozenset()   # what the backend supports there; empty = unknown
    cores: int = 1
    name: str = ""
    count: int = 1                                # devices the model runs on


@dataclass(frozen=True)
class ModelFacts:
    """The sizes that decide memory: weights, KV cache per token, prefill activations per token."""

    parameters: int
    layers: int
    hidden_size: int
    kv_width: int          # key/value heads x head size per layer (hidden_size without grouped-query attention)
    mlp_size: int
    vocab_size: int
    context_length: int
    stored_type: str = ""  # weight type in the model file (float16, int8, ...); "" = unknown

    def weight_bytes(self, compute_type: str) -> int:
        return self.parameters * WEIGHT_BYTES.get(compute_type, 4)

    def kv_bytes_per_token(self, compute_type: str) -> int:
        """Keys and values of every layer for one token."""
        return 2 * self.layers * self.kv_width * ACTIVATION_BYTES.get(compute_type, 4)

    def activation_bytes_per_token(self, compute_type: str) -> int:
        """Prefill working set per prompt token (the MLP's two up-projections and a few hidden-size tensors);
        freed after prefill, but CTranslate2's caching allocator keeps the memory."""
        return (2 * self.mlp_size + 4 * self.hidden_size) * ACTIVATION_BYTES.get(compute_type, 4)

    def bytes_per_batch_token(self, compute_type: str) -> int:
        return self.kv_bytes_per_token(compute_type) + self.activation_bytes_per_token(compute_type)

    def bytes_per_score_token(self, compute_type: str) -> int:
        """Scoring keeps every position's logits and log-probs (float32) next to the prefill activations."""
        return self.activation_bytes_per_token(compute_type) + 2 * 4 * self.vocab_size


@dataclass(frozen=True)
class Choice:
    """A default and the reason for it (logged on load, printed by `tower-cat doctor`)."""

    value: str
    reason: str


@dataclass(frozen=True)
class BatchBudget:
    """How much one engine batch may hold: padded (prompt + new) tokens and prompts."""

    max_batch_tokens: int
    max_batch_size: int
    reason: str
    max_score_tokens: int = CPU_BATCH_TOKENS  # tokens per scoring batch (every position's logits are kept)


# --------------------------------------------------------------------------------------------------------
# Decisions (pure)


def _batch_memory(device: DeviceFacts, model: ModelFacts, compute_type: str, replicas: int) -> int | None:
    """Bytes each replica's batches may plan to use on the tightest device, or None when memory is unknown."""
    free = device.free_memory or device.total_memory
    if not free:
        return None
    left = free - replicas * model.weight_bytes(compute_type) - GPU_RESERVE
    return int(max(0, left) * GPU_BUDGET_SHARE / max(1, replicas))


def gpu_fits(device: DeviceFacts, model: ModelFacts, compute_type: str, replicas: int = 1) -> bool:
    """Do the weights fit with room for useful batches (GPU_MIN_BATCH_TOKENS padded tokens)?"""
    room = _batch_memory(device, model, compute_type, replicas)
    if room is None:
        return True  # unknown memory: let CTranslate2 try
    return room >= GPU_MIN_BATCH_TOKENS * model.bytes_per_batch_token(compute_type)


def choose_compute_type(device: DeviceFacts, model: ModelFacts | None, replicas: int = 1) -> Choice:
    """The default compute type: int8 on the CPU; on a GPU the fastest measured type whose weights fit.

    The type the model was converted to does not limit the choice: CTranslate2 converts weights on load, and an
    int8-converted model runs faster in bfloat16 (with the same int8 rounding in its weights) when it fits."""
    supported = device.compute_types
    if device.kind == "cpu":
        if not supported or CPU_COMPUTE_TYPE in supported:
            return Choice(CPU_COMPUTE_TYPE, "CPU: int8 weights (2.3-2.6x transformers float32 at batch 16, "
                                            "measured on the development CPU)")
        fallback = "float32"
        return Choice(fallback, f"CPU without int8 support ({', '.join(sorted(supported))}): float32")
    candidates = [t for t in GPU_COMPUTE_PREFERENCE if not supported or t in supported]
    if not candidates:
        raise ModelError(f"the GPU supports none of {', '.join(GPU_COMPUTE_PREFERENCE)} "
                         f"(it reports {', '.join(sorted(supported))})", hint="use device='cpu'", param="device")
    if model is None:
        return Choice(candidates[0], f"{candidates[0]}: the fastest supported type (model size unknown)")
    for ct in candidates:
        if gpu_fits(device, model, ct, replicas):
            first = candidates[0]
            if ct == first:
                why = ("fastest measured on GPUs (int8 was slower than bfloat16 at every batch size on an H200)"
                       if ct == "bfloat16" else "fastest type this GPU supports")
            else:
                why = (f"{first} weights ({model.weight_bytes(first) / GiB:.1f} GiB) leave too little of "
                       f"{_gib(device.free_memory or device.total_memory)} free for batches")
            return Choice(ct, f"{ct}: {why}")
    smallest = min(candidates, key=lambda t: (WEIGHT_BYTES.get(t, 4), ACTIVATION_BYTES.get(t, 4)))
    return Choice(smallest, f"{smallest}: the model does not fit with room for batches even in 8 bits "
                            f"({model.weight_bytes(smallest) / GiB:.1f} GiB of weights, "
                            f"{_gib(device.free_memory or device.total_memory)} free); loading may fail")


def choose_batch_budget(device: DeviceFacts, model: ModelFacts | None, compute_type: str,
                        replicas: int = 1) -> BatchBudget:
    """Padded tokens and prompts per batch: the measured CPU set-up, or what the GPU's free memory holds."""
    if device.kind == "cpu":
        return BatchBudget(CPU_BATCH_TOKENS, CPU_BATCH_PROMPTS,
                           "CPU: 8192 tokens / 64 prompts, measured with one single-threaded replica per core")
    room = _batch_memory(device, model, compute_type, replicas) if model is not None else None
    if room is None:
        return BatchBudget(GPU_UNKNOWN_BATCH_TOKENS, GPU_BATCH_PROMPTS,
                           "GPU with unknown free memory or model size: a conservative 32768 tokens",
                           CPU_BATCH_TOKENS)
    per_token = model.bytes_per_batch_token(compute_type)
    tokens = room // per_token // 1024 * 1024
    score_tokens = max(room // model.bytes_per_score_token(compute_type) // 1024 * 1024, model.context_length)
    floor = min(model.context_length, CPU_BATCH_TOKENS)
    if tokens < floor:
        return BatchBudget(floor, GPU_BATCH_PROMPTS,
                           f"little GPU memory left after the weights ({room / GiB:.1f} GiB for batches): "
                           f"{floor} tokens, may run out of memory", floor)
    return BatchBudget(tokens, GPU_BATCH_PROMPTS,
                       f"{tokens} tokens: half of the {_gib(device.free_memory or device.total_memory)} free "
                       f"after weights and a 1 GiB reserve, at {per_token / 1024:.0f} KiB per token (KV cache + "
                       f"prefill); at most {GPU_BATCH_PROMPTS} prompts (best measured on an H200)", score_tokens)


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n else "unknown memory"


# --------------------------------------------------------------------------------------------------------
# Probes: the running machine and a model folder


def cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_memory() -> tuple[int, int]:
    """(total, available) bytes; 0 where the system does not tell."""
    total = free = 0
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    return total, free


@dataclass(frozen=True)
class GpuMemory:
    name: str
    total: int
    free: int


def parse_nvidia_smi(text: str, visible: str | None = None) -> list[GpuMemory]:
    """Lines of ``nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.free --format=csv,noheader,nounits``
    -> the GPUs in CUDA's numbering: filtered and ordered by CUDA_VISIBLE_DEVICES (indices or UUID prefixes).
    nvidia-smi counts in PCI order; CUDA too when CUDA_DEVICE_ORDER=PCI_BUS_ID (on machines with one kind of
    GPU the orders give the same memory either way)."""
    rows: list[tuple[str, str, GpuMemory]] = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        index, uuid, name = parts[0], parts[1], ",".join(parts[2:-2])
        try:
            total, free = int(float(parts[-2]) * MiB), int(float(parts[-1]) * MiB)
        except ValueError:  # "[N/A]" (MIG instances, some drivers)
            continue
        rows.append((index, uuid, GpuMemory(name, total, free)))
    if visible is None:
        return [r[2] for r in rows]
    out = []
    for entry in (e.strip() for e in visible.split(",")):
        if not entry:
            continue
        if entry.startswith("-"):  # CUDA stops at the first invalid entry
            break
        match = [r for r in rows if r[0] == entry or (not entry.isdigit() and r[1].startswith(entry))]
        if not match:
            break
        out.append(match[0][2])
    return out


def gpu_memory(backend: str = "ct2") -> list[GpuMemory]:
    """Name, total and free bytes of every visible CUDA device: from nvidia-smi (which creates no CUDA context
    in this process), else from torch when torch is the backend or already imported; [] when nothing can tell."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=index,uuid,name,memory.total,memory.free",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20,
                                 check=True).stdout
            found = parse_nvidia_smi(out, os.environ.get("CUDA_VISIBLE_DEVICES"))
            if found:
                return found
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("nvidia-smi failed: %s", exc)
    if backend == "transformers" or "torch" in sys.modules:
        try:
            import torch

            if torch.cuda.is_available():
                found = []
                for i in range(torch.cuda.device_count()):
                    free, total = torch.cuda.mem_get_info(i)
                    found.append(GpuMemory(torch.cuda.get_device_name(i), int(total), int(free)))
                return found
        except Exception as exc:  # noqa: BLE001 - a broken CUDA set-up only means "unknown"
            log.debug("torch could not read GPU memory: %s", exc)
    return []


def probe_device(kind: str, device_index: Sequence[int] = (0,), backend: str = "ct2") -> DeviceFacts:
    """Facts of the device(s) a model will run on; for several GPUs, the one with the least free memory."""
    cores = cpu_cores()
    if kind == "cpu":
        total, free = _cpu_memory()
        types: frozenset[str] = frozenset({"float32"})
        if backend == "ct2":
            try:
                import ctranslate2

                types = frozenset(ctranslate2.get_supported_compute_types("cpu"))
            except Exception as exc:  # noqa: BLE001 - unknown is a valid answer
                log.debug("CTranslate2 compute types unknown: %s", exc)
                types = frozenset()
        return DeviceFacts("cpu", total, free, types, cores, platform.processor() or platform.machine())
    indices = list(device_index) or [0]
    types = frozenset()
    try:
        if backend == "ct2":
            import ctranslate2

            sets = [set(ctranslate2.get_supported_compute_types("cuda", i)) for i in indices]
            types = frozenset(set.intersection(*sets))
        else:
            import torch

            bf16 = all(torch.cuda.is_bf16_supported() for _ in indices)
            types = frozenset({"float32", "float16"} | ({"bfloat16"} if bf16 else set()))
    except Exception as exc:  # noqa: BLE001
        log.debug("GPU compute types unknown: %s", exc)
    memories = gpu_memory(backend)
    used = [memories[i] for i in indices if i < len(memories)]
    if not used:
        return DeviceFacts("cuda", 0, 0, types, cores, "", len(indices))
    tightest = min(used, key=lambda m: m.free)
    return DeviceFacts("cuda", tightest.total, tightest.free, types, cores, tightest.name, len(indices))


def _read_string(f) -> str:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n)[:-1].decode("utf-8")


# CTranslate2's DataType enum order (ctranslate2/specs/model_spec.py)
_CT2_TYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def read_ct2_variables(path: str | Path) -> tuple[str, dict[str, tuple[tuple[int, ...], str]]]:
    """model.bin -> (spec name, {variable: (shape, dtype)}), reading only the headers (seeks over the data, so a
    15 GB file takes milliseconds)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            (version,) = struct.unpack("<I", f.read(4))
            if version < 2:
                raise ModelError(f"model.bin format {version} is too old to read", path=path,
                                 hint="re-run `tower-cat convert`")
            spec = _read_string(f)
            f.read(4)  # spec revision
            (count,) = struct.unpack("<I", f.read(4))
            variables = {}
            for _ in range(count):
                name = _read_string(f)
                (rank,) = struct.unpack("<B", f.read(1))
                shape = struct.unpack(f"<{rank}I", f.read(4 * rank)) if rank else ()
                if version >= 4:
                    type_id, size = struct.unpack("<BI", f.read(5))
                else:  # old files: item size, then element count
                    (item,) = struct.unpack("<B", f.read(1))
                    (n,) = struct.unpack("<I", f.read(4))
                    type_id, size = {4: 0, 1: 1, 2: 2}.get(item, 0), item * n
                variables[name] = (tuple(shape), _CT2_TYPES[type_id] if type_id < len(_CT2_TYPES) else "?")
                f.seek(size, os.SEEK_CUR)
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read model.bin: {exc}", path=path, hint="re-run `tower-cat convert`") from None
    return spec, variables


def read_ct2_model_facts(path: str | Path, context_length: int) -> ModelFacts:
    """ModelFacts of a CTranslate2 model folder (decoder-only or seq2seq) from model.bin's headers."""
    path = Path(path)
    spec, variables = read_ct2_variables(path / "model.bin" if path.is_dir() else path)
    params = 0
    stored: dict[str, int] = {}
    for name, (shape, dtype) in variables.items():
        if shape and dtype in ("float32", "float16", "bfloat16", "int8", "int16") and not name.endswith("_scale"):
            n = 1
            for d in shape:
                n *= d
            params += n
            stored[dtype] = stored.get(dtype, 0) + n
    side = "decoder"
    layers = {name.split("/")[1] for name in variables if name.startswith(f"{side}/layer_")}
    embed = next((shape for name, (shape, _) in variables.items()
                  if name.startswith(f"{side}/embeddings") and name.endswith("weight") and len(shape) == 2), None)
    if not layers or embed is None:
        raise ModelError(f"model.bin ({spec}) has no decoder layers or embeddings that tower-cat can size",
                         path=path, hint="re-run `tower-cat convert`")
    vocab, hidden = embed
    qkv = variables.get(f"{side}/layer_0/self_attention/linear_0/weight", ((3 * hidden, hidden), ""))[0]
    out = variables.get(f"{side}/layer_0/self_attention/linear_1/weight", ((hidden, hidden), ""))[0]
    q_width = out[1] if len(out) == 2 else hidden
    kv_width = max(1, (qkv[0] - q_width) // 2) if qkv[0] > q_width else hidden
    if any(name.startswith("decoder/layer_0/attention/") for name in variables):  # seq2seq: cross-attention
        kv_width *= 2  # keys/values of the source, about as long as the target
    mlp = variables.get(f"{side}/layer_0/ffn/linear_0/weight", ((4 * hidden, hidden), ""))[0][0]
    dtype = max(stored, key=stored.get) if stored else ""
    return ModelFacts(params, len(layers), hidden, kv_width, mlp, vocab, context_length, dtype)


def hf_model_facts(config: dict, context_length: int | None = None) -> ModelFacts:
    """ModelFacts from a Hugging Face config.json (dict), parameters estimated from the shapes."""
    c = config if "hidden_size" in config else (config.get("text_config") or config)  # multimodal: the LM part
    hidden = int(c.get("hidden_size") or c.get("d_model") or 0)
    layers = int(c.get("num_hidden_layers") or c.get("decoder_layers") or c.get("num_layers") or 0)
    if not hidden or not layers:
        raise ModelError("the model config has no hidden_size / num_hidden_layers", hint="is this a causal LM?")
    heads = int(c.get("num_attention_heads") or c.get("decoder_attention_heads") or 1)
    head_dim = int(c.get("head_dim") or hidden // heads)
    kv_heads = int(c.get("num_key_value_heads") or heads)
    mlp = int(c.get("intermediate_size") or c.get("decoder_ffn_dim") or c.get("ffn_dim") or 4 * hidden)
    vocab = int(c.get("vocab_size") or 32000)
    q, kv = heads * head_dim, kv_heads * head_dim
    per_layer = hidden * (q + 2 * kv) + q * hidden + 3 * hidden * mlp + 2 * hidden
    embeddings = vocab * hidden * (1 if c.get("tie_word_embeddings") else 2)
    ctx = context_length or int(c.get("max_position_embeddings") or 4096)
    dtype = str(c.get("torch_dtype") or c.get("dtype") or "")
    return ModelFacts(layers * per_layer + embeddings + hidden, layers, hidden, kv, mlp, vocab, ctx, dtype)


# --------------------------------------------------------------------------------------------------------
# cuBLAS for CTranslate2's CUDA build

CUBLAS = "libcublas.so.12"  # what CTranslate2 4.x's PyPI wheel dlopens on a GPU (it is built against CUDA 12)


def pip_cublas_dirs() -> list[Path]:
    """Folders where the `nvidia-cublas-cu12` wheel put its libraries (site-packages/nvidia/cublas/lib)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    return [Path(root) / "cublas" / "lib" for root in roots if (Path(root) / "cublas" / "lib").is_dir()]


def load_cublas() -> tuple[str | None, str]:
    """Make libcublas.so.12 loadable for CTranslate2: (where it came from or None, what was tried).

    The loader's own search path first (system CUDA 12, LD_LIBRARY_PATH); else the `nvidia-cublas-cu12` wheel's
    copy, loaded by full path with RTLD_GLOBAL so that CTranslate2's own dlopen of the same soname finds it
    without LD_LIBRARY_PATH."""
    import ctypes

    try:
        ctypes.CDLL(CUBLAS, mode=ctypes.RTLD_GLOBAL)
        return "the system library path", "loads"
    except OSError as exc:
        tried = [f"{CUBLAS}: {exc}"]
    for folder in pip_cublas_dirs():
        lib = folder / CUBLAS
        if not lib.is_file():
            tried.append(f"{folder}: no {CUBLAS}")
            continue
        try:
            lt = folder / "libcublasLt.so.12"
            if lt.is_file():
                ctypes.CDLL(str(lt), mode=ctypes.RTLD_GLOBAL)
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            return str(lib), "loaded from the nvidia-cublas-cu12 wheel"
        except OSError as exc:
            tried.append(f"{lib}: {exc}")
    return None, "; ".join(tried)
