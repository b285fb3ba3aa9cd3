"""Fine-tuning at client scale: streamed Arrow data, the runtime's prompt mix, full-sequence tokenization with a
SentencePiece Llama tokenizer, the accelerate configs, and two processes on the CPU matching one.

Memory and speed figures of the data step are in bench/finetune_data.py (not asserted here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tower_cat import prompts

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
TMX = SAMPLES / "tower-notes.tmx"
CONFIGS = ROOT / "finetune" / "accelerate"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
           OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """`finetune data --out` on the sample memory, en -> de, with the sample glossary (small shards)."""
    from tower_cat.finetune.data import DataConfig, build_datasets

    out = tmp_path_factory.mktemp("data")
    build_datasets([TMX], config=DataConfig(source="en", targets=("de",), heldout=20),
                   glossary=SAMPLES / "glossary.tbx", out_dir=out, shard_rows=150)
    return out


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from tower_cat.testing import build_tiny_hf_model

    return build_tiny_hf_model(tmp_path_factory.mktemp("tiny") / "hf", "llama", hidden_size=32, layers=1, heads=2,
                               kv_heads=1)


# ------------------------------------------------------------------------------------------------ data


def test_splits_are_sharded_memory_mapped_arrow(data_dir):
    from tower_cat.finetune.data import open_datasets
    from tower_cat.finetune.store import open_split

    ds = open_datasets(data_dir)
    sft_shards = sorted((data_dir / "sft").glob("shard-*.arrow"))
    assert len(sft_shards) == -(-len(ds.sft) // 150) > 2          # rotated every 150 rows
    split = open_split(data_dir / "sft")
    assert {Path(f["filename"]).name for f in split.cache_files} == {p.name for p in sft_shards}  # mapped files
    assert len(split) == len(ds.sft) == sum(ds.stats.tasks.values())
    # the lazy sequence gives the same objects by index, by slice and by iteration
    by_iter = list(ds.sft)
    assert by_iter[151] == ds.sft[151] and ds.sft[149:152] == by_iter[149:152] and ds.sft[-1] == by_iter[-1]
    assert not (data_dir / ".work").exists() and not list(data_dir.glob("*.tmp"))
    assert json.loads((data_dir / "stats.json").read_text())["config"]["runtime_share"] == 0.5


def test_prompt_mix_follows_the_runtime(data_dir):
    """About `runtime_share` of the translation examples carry every extra the pipeline would send —
    neighbours, notes, glossary terms and TM few-shot examples together — and the share is configurable."""
    from tower_cat.finetune.data import DataConfig, build_datasets, open_datasets

    ds = open_datasets(data_dir)
    tasks, mix = ds.stats.tasks, ds.stats.mix
    share = tasks["runtime"] / (tasks["runtime"] + tasks["translate"])
    assert 0.42 < share < 0.58, share
    assert mix["context+terms+few-shot"] + mix["context+notes+terms+few-shot"] >= 40
    combined = [e for e in ds.sft if e.task == "runtime" and "Use these German terms" in e.messages[0]["content"]
                and "Preceding English text" in e.messages[0]["content"]
                and e.messages[0]["content"].count("\nEnglish: ") >= 2]
    assert combined   # context + terms + few-shot in one prompt, as `translate` sends it
    none = build_datasets([TMX], config=DataConfig(source="en", targets=("de",), heldout=20, runtime_share=0.0),
                          glossary=SAMPLES / "glossary.tbx")
    every = build_datasets([TMX], config=DataConfig(source="en", targets=("de",), heldout=20, runtime_share=1.0),
                           glossary=SAMPLES / "glossary.tbx")
    assert none.stats.tasks["runtime"] == 0 and every.stats.tasks["translate"] == 0
    assert every.stats.tasks["runtime"] == len(every.train)
    no_tm = build_datasets([TMX], config=DataConfig(source="en", targets=("de",), heldout=20, fewshot_max=0),
                           glossary=SAMPLES / "glossary.tbx")     # `--few-shot 0`: no TM search at all
    assert no_tm.stats.tasks["fewshot"] == 0 and no_tm.stats.tasks["runtime"] > 0
    assert not any("few-shot" in combo for combo in no_tm.stats.mix)


def test_bad_monolingual_file_names_file_and_line(tmp_path):
    from tower_cat.finetune.data import DataError, iter_mono

    bad = tmp_path / "mono.txt"
    bad.write_bytes(b"first paragraph\n\nsecond \xff line\n")
    with pytest.raises(DataError) as err:
        list(iter_mono([bad]))
    assert str(bad) in str(err.value) and ":3" in str(err.value)


# ------------------------------------------------------------------------------------------------ tokens


def _sentencepiece_llama(tmp_path):
    """A SentencePiece BPE model trained on the samples, wrapped as TowerInstruct wraps Llama 2's: a fast
    LlamaTokenizer that prepends "▁" to a text (add_dummy_prefix), ChatML special tokens and template."""
    import sentencepiece as spm
    from transformers import LlamaTokenizerFast

    from tower_cat.testing import CHATML_TEMPLATE, DEFAULT_TEXTS, sample_texts

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sample_texts(limit=3000) + DEFAULT_TEXTS), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=800,
                                   model_type="bpe", character_coverage=1.0, byte_fallback=True, unk_id=0, bos_id=1,
                                   eos_id=2, pad_id=-1, add_dummy_prefix=True, minloglevel=2,
                                   user_defined_symbols=["<|im_start|>", "<|im_end|>"])
    tok = LlamaTokenizerFast(vocab_file=str(tmp_path / "sp.model"), from_slow=True, legacy=True,
                             add_prefix_space=True)
    tok.chat_template = CHATML_TEMPLATE
    return tok


def test_labels_are_the_runtime_generated_tokens_with_sentencepiece(tmp_path):
    """Full-sequence tokenization: the masked prefix is exactly what the engine sends, and the labels are the
    tokens that follow it in the rendered text — the ones the engine generates and scores after the prompt —
    not the answer tokenized alone (which starts with a "▁" the runtime never produces there)."""
    import torch
    import transformers

    from tower_cat.engine import Engine
    from tower_cat.finetune.train import IGNORE, encode_sft
    from tower_cat.testing import build_tiny_hf_model

    tok = _sentencepiece_llama(tmp_path)
    hf = build_tiny_hf_model(tmp_path / "hf", "llama", tokenizer=tok, hidden_size=32, layers=1, heads=2, kv_heads=1)
    engine = Engine.load(hf, backend="transformers", device="cpu", threads=1, cache=None)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf), dtype=torch.float32).eval()
    cases = [(prompts.translate_messages("Save the note", "en", "pt-PT"), "Guardar a nota"),
             (prompts.translate_messages("Delete <1>this</1> note?", "en", "de", terms=[("note", "Notiz")]),
              "<1>Diese</1> Notiz löschen?"),
             (prompts.post_edit_messages("Open the file", "Datei offnen", "en", "de"), "Datei öffnen")]
    leading_space_apart = 0
    try:
        for messages, response in cases:
            ids, labels = encode_sft(tok, messages, response, "<|im_end|>")
            n = labels.count(IGNORE)
            answer = labels[n:]
            assert labels[:n] == [IGNORE] * n and ids[n:] == answer
            rendered = engine.render(messages)
            assert list(rendered.ids) == ids[:n]                       # the prompt the engine sends
            full = tok(rendered.text + response + "<|im_end|>", add_special_tokens=False)["input_ids"]
            assert [tok.bos_token_id] + full == ids                   # one tokenization of prompt + answer
            assert tok.decode(answer) == response + "<|im_end|>"
            apart = tok(response, add_special_tokens=False)["input_ids"]
            leading_space_apart += tok.convert_ids_to_tokens(apart[0]).startswith("▁") and \
                not tok.convert_ids_to_tokens(answer[0]).startswith("▁")
            # the runtime's scoring of these tokens after its prompt = the training positions' log-probs
            runtime = engine.score([messages], [tok.convert_ids_to_tokens(answer)], add_end_token=False)[0]
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].float(), -1)
            target = torch.tensor(labels[1:])
            keep = target != IGNORE
            trained = logp[keep].gather(-1, target[keep].unsqueeze(-1)).mean().item()
            assert runtime == pytest.approx(trained, abs=1e-4)
    finally:
        engine.close()
    assert leading_space_apart == len(cases)   # what tokenizing the answer apart would have trained


# ------------------------------------------------------------------------------------------------ accelerate


@pytest.mark.parametrize("name", ["ddp.yaml", "fsdp.yaml", "zero3.yaml", "cpu-2.yaml"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(CONFIGS / name))
    kind = cfg.distributed_type.value if hasattr(cfg.distributed_type, "value") else str(cfg.distributed_type)
    expected = {"ddp.yaml": ("MULTI_GPU", 8), "fsdp.yaml": ("FSDP", 8), "zero3.yaml": ("DEEPSPEED", 8),
                "cpu-2.yaml": ("MULTI_GPU", 2)}[name]
    assert (kind, cfg.num_processes) == expected
    if name == "fsdp.yaml":
        assert cfg.fsdp_config["fsdp_version"] == 2 and cfg.fsdp_config["fsdp_activation_checkpointing"]
        assert cfg.mixed_precision == "bf16"
    if name == "zero3.yaml":
        assert cfg.deepspeed_config["zero_stage"] == 3 and cfg.deepspeed_config["zero3_save_16bit_model"]


def _train_cmd(data_dir, base, out, *, batch_size, grad_accum) -> list[str]:
    return ["-m", "tower_cat.finetune", "train", "--data", str(data_dir), "--stage", "sft", "--base", str(base),
            "--out", str(out), "--max-steps", "4", "--batch-size", str(batch_size), "--grad-accum", str(grad_accum),
            "--seq-len", "512", "--lr", "1e-2", "--warmup", "0", "--device", "cpu", "--threads", "1", "--json"]


def test_two_cpu_processes_match_one_with_the_same_global_batch(data_dir, tiny_base, tmp_path):
    """`accelerate launch` with 2 processes (gloo on the CPU), micro-batch 2 each, against one process with
    micro-batch 2 and 2 accumulation steps: the same global batch of 4.

    accelerate shards the one seeded permutation so that process k takes micro-batches k, k+2, …; one
    process takes micro-batches 0 and 1 as its two accumulation steps: every optimizer step sees the same
    examples, and the loss is normalised by the labelled tokens of the whole step on both sides (TRL scales
    each process's loss by the process count against the gloo all-reduce's averaging). What can differ is the
    float32 order of summation (gloo all-reduce vs accumulation in place), about 1e-7 relative per step,
    which Adam's normalised updates carry into later steps; the logged losses are rounded to 1e-4. Tolerance:
    2e-3 per step — far below the 0.1–0.4 a different batch order or a wrong loss scale produces here.
    """
    one = subprocess.run([sys.executable, *_train_cmd(data_dir, tiny_base, tmp_path / "one", batch_size=2,
                                                      grad_accum=2)],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(CONFIGS / "cpu-2.yaml"),
                          *_train_cmd(data_dir, tiny_base, tmp_path / "two", batch_size=2, grad_accum=1)],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    single = json.loads(one.stdout)
    multi = json.loads(two.stdout[two.stdout.index("{"):])
    assert json.loads((tmp_path / "two" / "training.json").read_text())["processes"] == 2
    assert json.loads((tmp_path / "one" / "training.json").read_text())["processes"] == 1
    assert single["steps"] == multi["steps"] == 4
    print(f"\nlosses, 1 process:   {single['losses']}\nlosses, 2 processes: {multi['losses']}")
    assert multi["losses"] == pytest.approx(single["losses"], abs=2e-3)
    assert single["losses"][-1] < single["losses"][0]
    assert (tmp_path / "two" / "model.safetensors").is_file()
