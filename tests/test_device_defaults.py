"""Device-aware defaults from given device and model facts (no GPU needed): compute type, batch budget, probes."""

from __future__ import annotations

import json
import math

import pytest

from tower_cat.devices import (GPU_BATCH_PROMPTS, GiB, MiB, DeviceFacts, ModelFacts, choose_batch_budget,
                               choose_compute_type, gpu_fits, hf_model_facts, parse_nvidia_smi,
                               read_ct2_model_facts)
from tower_cat.errors import ModelError

# The configs of the models users run (shapes from their config.json on the Hub).
TOWER_INSTRUCT_7B = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                     "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32007,
                     "max_position_embeddings": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
TOWER_PLUS_72B = {"model_type": "qwen2", "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
                  "num_key_value_heads": 8, "intermediate_size": 29568, "vocab_size": 152064,
                  "max_position_embeddings": 32768, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}

CT2_GPU = frozenset({"float32", "float16", "bfloat16", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                     "int16"})
CT2_GPU_NO_BF16 = frozenset({"float32", "float16", "int8", "int8_float32", "int8_float16"})  # T4, V100

H200 = DeviceFacts("cuda", 143 * GiB, 140 * GiB, CT2_GPU, 16, "NVIDIA H200")
A100_80 = DeviceFacts("cuda", 80 * GiB, 79 * GiB, CT2_GPU, 32, "NVIDIA A100-SXM4-80GB")
L4 = DeviceFacts("cuda", 24 * GiB, 22 * GiB, CT2_GPU, 8, "NVIDIA L4")
T4 = DeviceFacts("cuda", 15 * GiB, 14 * GiB + 700 * MiB, CT2_GPU_NO_BF16, 4, "Tesla T4")
CPU = DeviceFacts("cpu", 24 * GiB, 20 * GiB, frozenset({"float32", "int8", "int8_float32", "int16"}), 2)


@pytest.fixture(scope="module")
def tower_7b() -> ModelFacts:
    return hf_model_facts(TOWER_INSTRUCT_7B)


def test_hf_facts_match_the_published_parameter_counts(tower_7b):
    assert tower_7b.parameters == pytest.approx(6.74e9, rel=0.01)  # TowerInstruct-7B: 6.74 B
    assert (tower_7b.layers, tower_7b.hidden_size, tower_7b.kv_width, tower_7b.context_length) == (32, 4096, 4096,
                                                                                                   4096)
    plus = hf_model_facts(TOWER_PLUS_72B)
    assert plus.parameters == pytest.approx(72.7e9, rel=0.01)  # Qwen2.5-72B: 72.7 B
    assert plus.kv_width == 8 * 128  # grouped-query attention: 8 KV heads of 128
    assert tower_7b.kv_bytes_per_token("bfloat16") == 2 * 32 * 4096 * 2  # 512 KiB per token
    assert tower_7b.weight_bytes("int8_bfloat16") * 2 == tower_7b.weight_bytes("bfloat16")


def test_gpu_compute_type_is_bfloat16_where_the_model_fits(tower_7b):
    for gpu in (H200, A100_80, L4):
        choice = choose_compute_type(gpu, tower_7b)
        assert choice.value == "bfloat16", (gpu.name, choice)
        assert "fastest" in choice.reason


def test_int8_only_when_memory_demands_it(tower_7b):
    # a 16 GB T4 has no bfloat16; float16 weights (13.5 GB) leave no room for batches: int8 with float16 math
    choice = choose_compute_type(T4, tower_7b)
    assert choice.value == "int8_float16"
    assert "too little" in choice.reason and "float16" in choice.reason
    assert not gpu_fits(T4, tower_7b, "float16") and gpu_fits(T4, tower_7b, "int8_float16")
    # Tower+ 72B on an 80 GB A100: 145 GB of bfloat16 weights do not fit, int8_bfloat16 (73 GB) does
    plus = hf_model_facts(TOWER_PLUS_72B)
    assert choose_compute_type(A100_80, plus).value == "int8_bfloat16"
    # ... and on a 24 GB card nothing fits: the smallest type, and the reason says loading may fail
    small = choose_compute_type(L4, plus)
    assert small.value == "int8_bfloat16" and "may fail" in small.reason


def test_replicas_on_one_gpu_each_need_their_weights(tower_7b):
    # two bfloat16 copies of a 7B model on a 24 GB L4 cannot fit; one can
    assert choose_compute_type(L4, tower_7b, replicas=1).value == "bfloat16"
    assert choose_compute_type(L4, tower_7b, replicas=2).value != "bfloat16"
    one = choose_batch_budget(H200, tower_7b, "bfloat16", replicas=1)
    two = choose_batch_budget(H200, tower_7b, "bfloat16", replicas=2)
    assert two.max_batch_tokens < one.max_batch_tokens / 2


def test_cpu_defaults_are_the_measured_ones(tower_7b):
    assert choose_compute_type(CPU, tower_7b).value == "int8"
    assert choose_compute_type(CPU, None).value == "int8"
    no_int8 = DeviceFacts("cpu", compute_types=frozenset({"float32"}))
    assert choose_compute_type(no_int8, None).value == "float32"
    budget = choose_batch_budget(CPU, tower_7b, "int8")
    assert (budget.max_batch_tokens, budget.max_batch_size, budget.max_score_tokens) == (8192, 64, 8192)


def test_gpu_batch_budget_comes_from_free_memory_and_model_size(tower_7b):
    budget = choose_batch_budget(H200, tower_7b, "bfloat16")
    assert budget.max_batch_size == GPU_BATCH_PROMPTS == 256
    # a full batch of 256 bench prompts (280 prompt tokens + 128 new) fits on an H200 ...
    assert budget.max_batch_tokens >= 256 * (280 + 128)
    # ... and the planned KV cache + prefill memory stays within what is free after the weights
    planned = budget.max_batch_tokens * tower_7b.bytes_per_batch_token("bfloat16")
    assert planned + tower_7b.weight_bytes("bfloat16") < H200.free_memory
    # far above the CPU's 8192 tokens, and proportional to free memory
    assert budget.max_batch_tokens > 10 * 8192
    half = choose_batch_budget(DeviceFacts("cuda", 143 * GiB, 70 * GiB, CT2_GPU), tower_7b, "bfloat16")
    assert half.max_batch_tokens < budget.max_batch_tokens * 0.6
    # smaller model, more room per token: a bigger budget
    small = hf_model_facts({**TOWER_INSTRUCT_7B, "hidden_size": 2048, "num_hidden_layers": 22,
                            "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 5632})
    assert choose_batch_budget(H200, small, "bfloat16").max_batch_tokens > budget.max_batch_tokens
    # scoring keeps no KV cache but every position's logits: within the same memory, and a big vocabulary
    # (Gemma 2: 256k rows) makes scoring batches smaller than generation batches
    assert budget.max_score_tokens * tower_7b.bytes_per_score_token("bfloat16") <= planned * 1.01
    gemma = hf_model_facts({**TOWER_INSTRUCT_7B, "vocab_size": 256000, "num_key_value_heads": 8})
    gemma_budget = choose_batch_budget(H200, gemma, "bfloat16")
    assert 4096 <= gemma_budget.max_score_tokens < gemma_budget.max_batch_tokens
    assert "free" in budget.reason and "KiB per token" in budget.reason


def test_gpu_budget_with_unknown_memory_or_no_room(tower_7b):
    unknown = DeviceFacts("cuda", compute_types=CT2_GPU)
    assert choose_compute_type(unknown, tower_7b).value == "bfloat16"
    budget = choose_batch_budget(unknown, tower_7b, "bfloat16")
    assert budget.max_batch_tokens == 32768 and "unknown" in budget.reason
    assert choose_batch_budget(H200, None, "bfloat16").max_batch_tokens == 32768
    full = DeviceFacts("cuda", 16 * GiB, 14 * GiB, CT2_GPU)
    tight = choose_batch_budget(full, tower_7b, "bfloat16")  # weights alone take 13.5 GB
    assert tight.max_batch_tokens == 4096 and "may run out of memory" in tight.reason


def test_a_gpu_without_any_usable_compute_type_is_a_clear_error(tower_7b):
    with pytest.raises(ModelError, match="supports none of"):
        choose_compute_type(DeviceFacts("cuda", 16 * GiB, 15 * GiB, frozenset({"int16"})), tower_7b)


def test_unknown_compute_types_mean_the_fastest(tower_7b):
    assert choose_compute_type(DeviceFacts("cuda", 143 * GiB, 140 * GiB), tower_7b).value == "bfloat16"
    assert choose_compute_type(DeviceFacts("cuda", 143 * GiB, 140 * GiB, CT2_GPU), None).value == "bfloat16"


NVIDIA_SMI = """\
0, GPU-6f1a2b3c-0000-1111-2222-333344445555, NVIDIA H200, 143771, 143000
1, GPU-aaaa0000-0000-1111-2222-333344445555, NVIDIA A10, 23028, 1200
2, GPU-bbbb0000-0000-1111-2222-333344445555, NVIDIA A100-SXM4-80GB, 81920, [N/A]
"""


def test_nvidia_smi_output_in_cuda_numbering():
    gpus = parse_nvidia_smi(NVIDIA_SMI)
    assert [g.name for g in gpus] == ["NVIDIA H200", "NVIDIA A10"]  # [N/A] memory: not reported
    assert gpus[0].total == 143771 * MiB and gpus[0].free == 143000 * MiB
    assert [g.name for g in parse_nvidia_smi(NVIDIA_SMI, "1,0")] == ["NVIDIA A10", "NVIDIA H200"]
    assert [g.name for g in parse_nvidia_smi(NVIDIA_SMI, "GPU-aaaa0000")] == ["NVIDIA A10"]
    assert parse_nvidia_smi(NVIDIA_SMI, "") == []
    assert [g.name for g in parse_nvidia_smi(NVIDIA_SMI, "0,-1,1")] == ["NVIDIA H200"]  # CUDA stops at -1
    assert parse_nvidia_smi("", None) == []


def test_ct2_model_facts_read_from_model_bin(tiny_llama):
    """The header reader sizes a converted model exactly like its Hugging Face weights and config say."""
    from safetensors import safe_open

    config = json.loads((tiny_llama.hf_path / "config.json").read_text())
    facts = read_ct2_model_facts(tiny_llama.ct2_path, 2048)
    hf = hf_model_facts(config)
    total = 0
    for f in tiny_llama.hf_path.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            names = [k for k in st.keys() if "norm" not in k]  # CT2 stores equal norm weights once
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in names)
    assert facts.parameters >= total
    assert facts.parameters == pytest.approx(hf.parameters, rel=0.01)
    assert (facts.layers, facts.hidden_size, facts.kv_width, facts.mlp_size) == (hf.layers, hf.hidden_size,
                                                                                 hf.kv_width, hf.mlp_size)
    assert facts.vocab_size == config["vocab_size"] and facts.stored_type == "float32"


def test_broken_model_bin_is_a_clear_error(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00\xff")
    with pytest.raises(ModelError, match="model.bin"):
        read_ct2_model_facts(tmp_path, 4096)
