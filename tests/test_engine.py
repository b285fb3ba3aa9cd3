"""Engine: CT2 vs Hugging Face equality, prompt rendering, end tokens, dedup, cache, streaming, CLI."""

from __future__ import annotations

import contextlib
import json

import ctranslate2
import pytest
import torch
import transformers

from tests.conftest_engine import END_TOKEN_CASES
from tower_cat import prompts
from tower_cat.convert import SIDECAR, ModelInfo, convert_model
from tower_cat.core import quick_prompt
from tower_cat.engine import (Engine, GenerationCache, GenerationOptions, SourceText, auto_compute_type,
                              resolve_device)
from tower_cat.errors import ModelError, TowerCatError

SENTENCES = [
    "The printer is out of paper.",
    "Click Save to keep your changes.",
    "Um grupo de investigadores lançou um novo modelo para tarefas relacionadas com tradução.",
    "The file could not be opened because it is locked by another user.",
    "Le chat dort sur le canapé.",
    "Numbers: 3.14, 50% and €20.",
    "Hello!",
    "A group of researchers has launched a new model for translation-related tasks.",
    "Die Datei konnte nicht geöffnet werden.",
    "Use these terms: printer = Drucker.",
]
PAIRS = [("en", "de"), ("en", "pt-PT"), ("pt", "en"), ("en", "fr"), ("fr", "en"), ("en", "es"), ("en", "it"),
         ("en", "nl"), ("de", "en"), ("en", "de")]
NEW_TOKENS = 16


def _messages(engine, i):
    src, tgt = PAIRS[i]
    return prompts.translate_messages(SENTENCES[i], src, tgt, wording=engine.info.wording)


def _hf(model):
    torch.set_num_threads(1)  # tiny matrices: more threads only add synchronisation on a busy 2-core box
    return transformers.AutoModelForCausalLM.from_pretrained(model.hf_path, dtype=torch.float32,
                                                             attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def ct2_engines(tiny_models):
    return {arch: Engine.load(m.ct2_path, device="cpu", compute_type="float32", threads=1)
            for arch, m in tiny_models.items() if arch != "gemma2"}


# -- CT2 reproduces Hugging Face (Llama, Qwen2) --------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_ct2_greedy_equals_hf_generate(arch, tiny_models, ct2_engines):
    engine = ct2_engines[arch]
    hf = _hf(tiny_models[arch])
    all_messages = [_messages(engine, i) for i in range(10)]
    results = engine.generate(all_messages, GenerationOptions(max_new_tokens=NEW_TOKENS))
    end_ids = engine.tokenizer.convert_tokens_to_ids(engine.end_tokens)
    for messages, result in zip(all_messages, results):
        ids = torch.tensor([engine.render(messages).ids])
        with torch.inference_mode():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False,
                              eos_token_id=end_ids, pad_token_id=end_ids[0])
        new = out[0, ids.shape[1]:].tolist()
        if new and new[-1] in end_ids:
            new = new[:-1]
        assert list(result.tokens) == engine.tokenizer.convert_ids_to_tokens(new)
        assert len(result.tokens) > 0


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_score_equals_hf_log_probs(arch, tiny_models, ct2_engines):
    engine = ct2_engines[arch]
    hf = _hf(tiny_models[arch])
    all_messages = [_messages(engine, i) for i in range(6)]
    continuations = ["Der Drucker hat kein Papier mehr.", "Klicken Sie auf Speichern.", "A group.", "x",
                     "Le chat.", "Zahlen: 3,14"]
    scores = engine.score(all_messages, continuations)
    end_id = engine.tokenizer.convert_tokens_to_ids(engine.end_tokens[0])
    for messages, cont, score in zip(all_messages, continuations, scores):
        prompt_ids = list(engine.render(messages).ids)
        cont_ids = engine.tokenizer(cont, add_special_tokens=False)["input_ids"] + [end_id]
        ids = torch.tensor([prompt_ids + cont_ids])
        with torch.inference_mode():
            logp = torch.log_softmax(hf(ids).logits[0, :-1].float(), dim=-1)
        picked = logp[torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1), torch.tensor(cont_ids)]
        assert score == pytest.approx(picked.mean().item(), abs=1e-4)
        assert score < 0


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_transformers_backend_matches_ct2(arch, tiny_models, ct2_engines):
    ct2 = ct2_engines[arch]
    hf = Engine.load(tiny_models[arch].ct2_path, backend="transformers", device="cpu", threads=1)
    assert hf.hf_model == str(tiny_models[arch].hf_path.resolve())
    all_messages = [_messages(ct2, i) for i in range(4)]
    opts = GenerationOptions(max_new_tokens=NEW_TOKENS)
    assert [g.tokens for g in hf.generate(all_messages, opts)] == [g.tokens for g in ct2.generate(all_messages, opts)]
    assert hf.score(all_messages, ["Hallo Welt"] * 4) == pytest.approx(ct2.score(all_messages, ["Hallo Welt"] * 4),
                                                                       abs=1e-4)


def test_generation_scores_are_mean_log_probs(ct2_engines):
    engine = ct2_engines["llama"]
    messages = _messages(engine, 0)
    gen = engine.generate([messages], GenerationOptions(max_new_tokens=8))[0]
    # the generated tokens (no end token: budget hit) scored again give the generation's own log-prob
    assert gen.truncated
    rescored = engine.score([messages], [list(gen.tokens)], add_end_token=False)[0]
    assert gen.log_prob == pytest.approx(rescored, abs=1e-4)


# -- prompts, BOS, end tokens ---------------------------------------------------------------------------------


def test_tower_instruct_prompt_renders_exactly(ct2_engines):
    engine = ct2_engines["llama"]
    assert engine.family == "tower_instruct"
    text = "Um grupo de investigadores lançou um novo modelo para tarefas relacionadas com tradução."
    rendered = engine.render(prompts.translate_messages(text, "pt", "en"))
    assert rendered.text == ("<|im_start|>user\nTranslate the following text from Portuguese into English.\n"
                             f"Portuguese: {text}\nEnglish:<|im_end|>\n<|im_start|>assistant\n")
    assert rendered.tokens[0] == "<s>" and rendered.tokens.count("<s>") == 1
    assert engine.tokenizer.decode(rendered.ids) == "<s>" + rendered.text  # the tokens are exactly that text


@pytest.mark.parametrize("arch,bos", [("llama", "<s>"), ("gemma2", "<bos>"), ("qwen2", None)])
def test_exactly_one_bos_per_family(arch, bos, tiny_models):
    with warnings_ok():
        engine = Engine.load(tiny_models[arch].ct2_path, device="cpu", threads=1)
    rendered = engine.render(prompts.translate_messages("Hello", "en", "de", wording=engine.info.wording))
    if bos is None:  # Qwen has no BOS: the prompt starts with the first turn
        assert engine.tokenizer.bos_token is None
        assert rendered.tokens[0] == "<|im_start|>"
    else:
        # Gemma's template writes <bos> and its tokenizer adds one too: still exactly one
        assert rendered.tokens[0] == bos
        assert rendered.tokens.count(bos) == 1
    raw = engine.render("English: Hello\nGerman:")  # raw text (base-model style) also gets one BOS
    assert raw.tokens.count(bos) == (1 if bos else 0)


def test_literal_bos_text_in_source_is_refused(ct2_engines):
    engine = ct2_engines["llama"]
    with pytest.raises(ModelError, match="start-of-sequence"):
        engine.render(prompts.translate_messages("x <s> y", "en", "de"))


@contextlib.contextmanager
def warnings_ok():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("arch,token", END_TOKEN_CASES)
def test_generation_stops_on_each_family_end_token(arch, token, biased_models):
    model = biased_models[(arch, token)]
    assert token in model.info.end_tokens
    with warnings_ok():
        engine = Engine.load(model.ct2_path, device="cpu", compute_type="float32", threads=1)
    messages = prompts.translate_messages("Hello", "en", "de", wording=engine.info.wording)
    gen = engine.generate([messages], GenerationOptions(max_new_tokens=10))[0]
    assert gen.tokens == () and gen.text == "" and not gen.truncated
    # control: without that end token the rigged model emits it until the budget runs out
    others = tuple(t for t in engine.end_tokens if t != token)
    ctl = engine.generate([messages], GenerationOptions(max_new_tokens=5, end_tokens=others or ("<unk>",)))[0]
    assert ctl.tokens == (token,) * 5 and ctl.truncated


@pytest.mark.parametrize("arch,token", [("gemma2", "<end_of_turn>"), ("llama", "<|im_end|>")])
def test_transformers_backend_stops_on_end_tokens(arch, token, biased_models):
    engine = Engine.load(biased_models[(arch, token)].ct2_path, backend="transformers", device="cpu", threads=1)
    messages = prompts.translate_messages("Hello", "en", "de", wording=engine.info.wording)
    gen = engine.generate([messages], GenerationOptions(max_new_tokens=10))[0]
    assert gen.tokens == () and not gen.truncated
    events = list(engine.generate_tokens(messages, GenerationOptions(max_new_tokens=10)))
    assert events == []


def test_gemma2_loads_with_a_warning_and_runs(tiny_models):
    model = tiny_models["gemma2"]
    assert model.info.family == "tower_plus_gemma2"
    assert model.info.end_tokens == ["<end_of_turn>", "<eos>"]
    assert json.loads((model.ct2_path / "config.json").read_text())["eos_token"] == "<eos>"  # CT2's own default
    with pytest.warns(RuntimeWarning, match="soft-capping"):
        engine = Engine.load(model.ct2_path, device="cpu", compute_type="float32", threads=1)
    messages = prompts.translate_messages("Hello", "en", "pt-PT", wording="plus")
    assert "Portuguese (Portugal)" in messages[0]["content"]
    gen = engine.generate([messages], GenerationOptions(max_new_tokens=6))[0]
    assert len(gen.tokens) == 6 and gen.truncated
    # scores stay close to HF at this size (soft-capping barely bites), but are not claimed exact
    hf = Engine.load(model.ct2_path, backend="transformers", device="cpu", threads=1)
    assert engine.score([messages], ["Olá"])[0] == pytest.approx(hf.score([messages], ["Olá"])[0], abs=1e-2)


# -- batching, dedup, cache -----------------------------------------------------------------------------------


class _Spy:
    """Counts the prompts that reach the model."""

    def __init__(self, engine):
        self.prompts = 0
        self.calls = 0
        backend = engine.backend
        original = backend.generate

        def generate(batches, *args, **kwargs):
            self.calls += 1
            self.prompts += sum(len(b) for b in batches)
            return original(batches, *args, **kwargs)

        backend.generate = generate


def test_repeated_prompts_are_generated_once(tiny_llama):
    engine = Engine.load(tiny_llama.ct2_path, device="cpu", compute_type="float32", threads=1)
    spy = _Spy(engine)
    distinct = [_messages(engine, i) for i in range(3)]
    batch = [distinct[i % 3] for i in range(10)]
    seen = []
    results = engine.generate(batch, GenerationOptions(max_new_tokens=8), progress=lambda d, t: seen.append((d, t)))
    assert spy.prompts == 3
    assert seen and seen[-1] == (3, 3)
    assert engine.stats.prompts_generated == 3 and engine.stats.prompts_requested == 10
    for i, r in enumerate(results):
        assert r.tokens == results[i % 3].tokens
    assert len({r.tokens for r in results[:3]}) == 3


def test_cached_run_never_loads_the_generator(tiny_llama, tmp_path, monkeypatch):
    cache = tmp_path / "cache.sqlite"
    batch = [_messages_for_llama(i) for i in range(6)]
    opts = GenerationOptions(max_new_tokens=8)
    first = Engine.load(tiny_llama.ct2_path, device="cpu", threads=1, cache=cache)
    expected = first.generate(batch[:4], opts)  # "interrupted" after 4
    assert not any(g.cached for g in expected) and first.stats.generator_loads == 1
    first.close()

    loads = []
    real = ctranslate2.Generator
    monkeypatch.setattr(ctranslate2, "Generator", lambda *a, **k: loads.append(a) or real(*a, **k))
    second = Engine.load(tiny_llama.ct2_path, device="cpu", threads=1, cache=cache)
    again = second.generate(batch[:4], opts)
    assert loads == [] and not second.is_loaded and second.stats.generator_loads == 0
    assert all(g.cached for g in again)
    assert [g.tokens for g in again] == [g.tokens for g in expected]
    assert [g.text for g in again] == [g.text for g in expected]

    resumed = second.generate(batch, opts)  # the full job: only the 2 missing prompts run
    assert len(loads) == 1 and second.stats.prompts_generated == 2
    assert [g.cached for g in resumed] == [True] * 4 + [False] * 2
    assert len(GenerationCache(cache)) == 6


def _messages_for_llama(i):
    src, tgt = PAIRS[i]
    return prompts.translate_messages(SENTENCES[i], src, tgt)


def test_cache_key_depends_on_options_and_model(tiny_models, tmp_path):
    cache = tmp_path / "c.sqlite"
    llama = Engine.load(tiny_models["llama"].ct2_path, device="cpu", threads=1, cache=cache)
    messages = _messages(llama, 0)
    llama.generate([messages], GenerationOptions(max_new_tokens=4))
    assert not llama.generate([messages], GenerationOptions(max_new_tokens=5))[0].cached
    assert llama.generate([messages], GenerationOptions(max_new_tokens=4))[0].cached
    fp32 = Engine.load(tiny_models["llama"].ct2_path, device="cpu", compute_type="float32", threads=1, cache=cache)
    assert fp32.fingerprint != llama.fingerprint
    assert not fp32.generate([messages], GenerationOptions(max_new_tokens=4))[0].cached
    # sampling without a fixed outcome is never served from the cache
    sample = GenerationOptions(max_new_tokens=4, sampling_topk=0, sampling_temperature=1.0)
    llama.generate([messages], sample)
    assert not llama.generate([messages], sample)[0].cached


def test_token_budget_batches_give_the_same_results(ct2_engines):
    engine = ct2_engines["llama"]
    batch = [_messages(engine, i) for i in range(10)]
    one = engine.generate(batch, GenerationOptions(max_new_tokens=NEW_TOKENS))
    before = engine.stats.batches
    small = engine.generate(batch, GenerationOptions(max_new_tokens=NEW_TOKENS, max_batch_tokens=200))
    assert engine.stats.batches - before >= 4
    assert [g.tokens for g in small] == [g.tokens for g in one]


def test_budget_follows_source_length(ct2_engines):
    engine = ct2_engines["llama"]
    opts = GenerationOptions(max_new_tokens=100, length_ratio=1.0, length_extra=2)
    short, long = "Hi", SENTENCES[3]
    assert engine.budget(short, opts) == engine.count_tokens(short) + 2
    assert engine.budget(long, opts) == engine.count_tokens(long) + 2
    assert engine.budget(long * 50, opts) == 100
    gens = engine.generate([_messages(engine, 6), _messages(engine, 3)], opts, sources=[short, long])
    assert len(gens[0].tokens) <= engine.budget(short, opts)
    assert len(gens[1].tokens) <= engine.budget(long, opts)
    # a shared batch ran with the larger budget; the short prompt's result equals running it alone
    alone = engine.generate([_messages(engine, 6)], opts, sources=[short])[0]
    assert gens[0].tokens == alone.tokens


def test_beam_search_and_n_best(ct2_engines):
    engine = ct2_engines["llama"]
    gen = engine.generate([_messages(engine, 0)], GenerationOptions(max_new_tokens=6, beam_size=4,
                                                                    num_hypotheses=3))[0]
    assert len(gen.hypotheses) == 3
    assert len({h.tokens for h in gen.hypotheses}) == 3
    scores = [h.log_prob for h in gen.hypotheses]
    assert scores == sorted(scores, reverse=True)


def test_sampling_with_a_seed_repeats_across_loads(tiny_llama):
    opts = GenerationOptions(max_new_tokens=8, sampling_topk=0, sampling_temperature=1.5)
    runs = []
    for _ in range(2):
        engine = Engine.load(tiny_llama.ct2_path, device="cpu", compute_type="float32", threads=1, seed=3)
        runs.append([engine.generate([_messages(engine, 1)], opts)[0].tokens for _ in range(2)])
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[0][1]  # successive draws differ
    greedy = engine.generate([_messages(engine, 1)], GenerationOptions(max_new_tokens=8))[0]
    assert greedy.tokens not in runs[0]


# -- streaming ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ct2", "transformers"])
def test_streaming_matches_generate_and_closes(backend, tiny_llama, ct2_engines):
    engine = ct2_engines["llama"] if backend == "ct2" else Engine.load(
        tiny_llama.ct2_path, backend="transformers", device="cpu", threads=1)
    messages = _messages(engine, 2)
    opts = GenerationOptions(max_new_tokens=12)
    full = engine.generate([messages], opts)[0]
    events = list(engine.generate_tokens(messages, opts))
    assert tuple(e.token for e in events) == full.tokens
    assert "".join(e.text for e in events) == full.text
    assert all(e.log_prob is not None and e.log_prob <= 0 for e in events)
    with contextlib.closing(engine.generate_tokens(messages, opts)) as stream:
        first = next(stream)
    assert first.token == full.tokens[0]
    # the engine still works after a stream was abandoned half way
    assert engine.generate([messages], GenerationOptions(max_new_tokens=12))[0].tokens == full.tokens


# -- devices, conversion, errors, CLI -------------------------------------------------------------------------


def test_auto_device_and_compute_type_on_cpu(tiny_llama):
    if ctranslate2.get_cuda_device_count() == 0:
        assert resolve_device("auto") == ("cpu", [0])
    assert auto_compute_type("cpu") == "int8"
    assert resolve_device([0, 1]) == ("cuda", [0, 1])
    engine = Engine.load(tiny_llama.ct2_path, device="cpu", threads=1)
    assert engine.compute_type == "int8"
    gen = engine.generate([_messages(engine, 0)], GenerationOptions(max_new_tokens=4))[0]
    assert len(gen.tokens) == 4


@pytest.mark.gpu
@pytest.mark.skipif(ctranslate2.get_cuda_device_count() == 0, reason="needs a CUDA GPU")
def test_cuda_auto_settings(tiny_llama):
    engine = Engine.load(tiny_llama.ct2_path)  # auto: CUDA, bf16 where the GPU has it
    assert engine.device == "cuda"
    assert engine.compute_type in ctranslate2.get_supported_compute_types("cuda", 0)
    assert engine.compute_type != "float32"
    if "bfloat16" in ctranslate2.get_supported_compute_types("cuda", 0):  # a tiny model always fits
        assert engine.compute_type == "bfloat16", engine.compute_type_reason
    budget = engine.batch_budget  # from the GPU's free memory, not the CPU's 8192 tokens
    assert budget.max_batch_size == 256 and budget.max_batch_tokens > 8192, budget
    assert engine.device_facts.free_memory > 0 and engine.model_facts is not None
    gens = engine.generate([_messages(engine, i) for i in range(4)], GenerationOptions(max_new_tokens=8))
    assert all(len(g.tokens) > 0 for g in gens)
    many = Engine.load(tiny_llama.ct2_path, device=list(range(ctranslate2.get_cuda_device_count())))
    assert [g.tokens for g in many.generate([_messages(engine, i) for i in range(4)],
                                            GenerationOptions(max_new_tokens=8))] == [g.tokens for g in gens]


def test_convert_writes_sidecar_and_tokenizer(tiny_llama, tmp_path):
    out = tmp_path / "int8"
    info = convert_model(tiny_llama.hf_path, out, quantization="int8")
    for name in ("model.bin", "config.json", "tokenizer.json", "tokenizer_config.json", SIDECAR):
        assert (out / name).is_file(), name
    assert ModelInfo.load(out) == info and info.quantization == "int8"
    assert info.family == "tower_instruct" and info.end_tokens == ["<|im_end|>", "</s>"]
    assert info.hf_model == str(tiny_llama.hf_path.resolve())
    with pytest.raises(ModelError, match="not empty"):
        convert_model(tiny_llama.hf_path, out)


def test_base_model_without_template(tmp_path, tiny_tokenizers):
    from tower_cat.testing import build_tiny_model

    tok = tiny_tokenizers["llama"]
    base_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, bos_token="<s>",
                                                    eos_token="</s>", unk_token="<unk>")
    model = build_tiny_model(tmp_path / "base", "llama", tokenizer=base_tok)
    assert model.info.family == "base" and model.info.end_tokens == ["</s>"]
    engine = Engine.load(model.ct2_path, device="cpu", threads=1)
    messages = prompts.translate_messages("Hello", "en", "de", wording=engine.info.wording)
    rendered = engine.render(messages)
    assert rendered.text == "English: Hello\nGerman:"
    assert rendered.tokens[0] == "<s>" and rendered.tokens.count("<s>") == 1


def test_model_errors_speak_plainly(tiny_llama, tmp_path):
    with pytest.raises(ModelError, match="model folder not found") as err:
        Engine.load(tmp_path / "nope")
    assert isinstance(err.value, TowerCatError) and "tower-cat convert" in str(err.value)
    with pytest.raises(ModelError, match="Hugging Face model folder"):
        Engine.load(tiny_llama.hf_path)
    with pytest.raises(ModelError, match="tower_cat.json"):
        bare = tmp_path / "bare"
        bare.mkdir()
        (bare / "model.bin").write_bytes(b"")
        Engine.load(bare)
    # an HF folder works directly with the transformers backend
    hf = Engine.load(tiny_llama.hf_path, backend="transformers", device="cpu", threads=1)
    assert hf.family == "tower_instruct"


def test_cli_convert_and_translate_text(tiny_llama, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tower_cat.cli import cli

    monkeypatch.setenv("TOWER_CAT_CACHE", str(tmp_path / "cache.sqlite"))
    runner = CliRunner()
    out = tmp_path / "cli-model"
    res = runner.invoke(cli, ["convert", str(tiny_llama.hf_path), str(out), "--quantization", "int8"])
    assert res.exit_code == 0, res.output
    assert "tower_instruct" in res.output and (out / SIDECAR).is_file()
    args = ["translate-text", "The printer is out of paper.", "--model", str(out), "-s", "en", "-t", "de",
            "--max-new-tokens", "6", "--threads", "1"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    engine = Engine.load(out, device="cpu", threads=1)
    expected = engine.generate([prompts.translate_messages("The printer is out of paper.", "en", "de")],
                               GenerationOptions(max_new_tokens=6),
                               sources=["The printer is out of paper."])[0]
    assert res.stdout.strip() == prompts.clean_translation(expected.text, "de")
    assert (tmp_path / "cache.sqlite").is_file()
    streamed = runner.invoke(cli, args + ["--stream", "--no-cache"])
    assert streamed.exit_code == 0 and streamed.stdout.strip() == expected.text.strip()


# -- seq2seq (Marian on ctranslate2.Translator) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    from tower_cat.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("marian"), "marian")


def test_marian_translator_equals_hf_generate(tiny_marian):
    assert tiny_marian.info.family == "seq2seq" and tiny_marian.info.seq2seq_kind == "marian"
    engine = Engine.load(tiny_marian.ct2_path, device="cpu", compute_type="float32", threads=1)
    hf = transformers.MarianMTModel.from_pretrained(tiny_marian.hf_path).eval()
    sources = SENTENCES[:5]
    gens = engine.generate([quick_prompt(engine, s, "en", "de") for s in sources],
                           GenerationOptions(max_new_tokens=NEW_TOKENS))
    for text, gen in zip(sources, gens):
        rendered = engine.render(text)
        assert rendered.tokens[-1] == "</s>" and rendered.target_prefix == ()
        with torch.inference_mode():
            out = hf.generate(torch.tensor([rendered.ids]), max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1)
        new = out[0, 1:].tolist()  # drop the decoder start token
        if new and new[-1] == engine.tokenizer.eos_token_id:
            new = new[:-1]
        assert list(gen.tokens) == engine.tokenizer.convert_ids_to_tokens(new)
    streamed = [e.token for e in engine.generate_tokens(SourceText(sources[0]), GenerationOptions(max_new_tokens=NEW_TOKENS))]
    assert tuple(streamed) == gens[0].tokens
    with pytest.raises(ModelError, match="not chat messages"):
        engine.render(prompts.translate_messages("Hi", "en", "de"))
    with pytest.raises(ModelError, match="transformers backend"):
        Engine.load(tiny_marian.ct2_path, backend="transformers")


def test_nllb_and_m2m_language_codes():
    from tower_cat.languages import m2m_code, nllb_code

    assert nllb_code("de") == "deu_Latn" and nllb_code("zh-TW") == "zho_Hant" and nllb_code("pt-BR") == "por_Latn"
    assert nllb_code("deu_Latn") == "deu_Latn" and m2m_code("pt-BR") == "__pt__"
    with pytest.raises(ValueError):
        nllb_code("xx")


def test_cpu_layout_defaults_and_overrides():
    from tower_cat.engine import cpu_layout, default_threads

    cores = default_threads()
    assert cpu_layout(None, None) == (1, cores)  # one single-threaded replica per core
    assert cpu_layout(4, None) == (4, 1)  # threads alone: one replica, latency set-up
    assert cpu_layout(None, 3) == (1, 3)
    assert cpu_layout(2, 2) == (2, 2)
    assert cpu_layout(None, None, backend="transformers") == (cores, 1)


def test_work_is_split_so_every_replica_decodes(tiny_llama):
    """Eight prompts on two replicas: two batches (counted), and the same greedy output as one replica."""
    from tower_cat.engine import Engine, GenerationOptions

    texts = [f"Open the note number {i} in a new window." for i in range(8)]
    msgs = [prompts.translate_messages(t, "en", "de") for t in texts]
    opts = GenerationOptions(max_new_tokens=6, use_cache=False)
    two = Engine.load(tiny_llama.ct2_path, device="cpu", compute_type="float32", replicas=2, cache=None)
    one = Engine.load(tiny_llama.ct2_path, device="cpu", compute_type="float32", threads=1, replicas=1, cache=None)
    assert (two.threads, two.replicas, two.parallel) == (1, 2, 2)
    out2, out1 = two.generate(msgs, opts), one.generate(msgs, opts)
    assert two.stats.batches == 2 and one.stats.batches == 1
    assert [g.tokens for g in out2] == [g.tokens for g in out1]


# -- batching: as few batches as the budget allows, evened out ----------------------------------------------


def _sizes(batches):
    return [len(b) for b in batches]


def test_batches_are_few_and_even(ct2_engines):
    engine = ct2_engines["llama"]
    assert engine.parallel == 1
    order = list(range(5))
    lengths, budgets = [10] * 5, [10] * 5
    # five prompts, at most four a batch: 2 + 3 (the longer prompts in the smaller batch), not 4 + 1 (a
    # one-prompt batch costs a whole decoding loop)
    assert _sizes(engine._cut_batches(order, lengths, budgets, 10_000, 4)) == [2, 3]
    # token-bound, longest first: the fewest batches the budget allows, no small remainder at the end
    lengths = [90, 80, 70, 60, 50, 40, 30, 30, 30, 30, 30, 30, 20, 20, 20, 20, 20]
    order, budgets = list(range(len(lengths))), [10] * len(lengths)
    from tower_cat.engine import _cut_in_order

    greedy = _cut_in_order(order, lengths, budgets, 300, 64)
    even = engine._cut_batches(order, lengths, budgets, 300, 64)
    assert len(even) == len(greedy)
    assert max(_sizes(even)) - min(_sizes(even)) < max(_sizes(greedy)) - min(_sizes(greedy))
    for batch in even:  # every batch within the budget, prompts in length order
        assert max(lengths[i] + budgets[i] for i in batch) * len(batch) <= 300
    assert [i for b in even for i in b] == order
    # a prompt larger than the budget alone still gets a batch of its own
    assert engine._cut_batches([0, 1], [500, 10], [10, 10], 300, 64) == [[0], [1]]


def test_batches_are_a_multiple_of_the_replicas(tiny_llama):
    two = Engine.load(tiny_llama.ct2_path, device="cpu", compute_type="float32", replicas=2, cache=None)
    assert two.parallel == 2
    lengths = [30] * 9
    order, budgets = list(range(9)), [10] * 9
    # 40 tokens each, 120 a batch: 3 prompts fit, greedy makes 3 batches; two replicas: 4 even batches instead
    sizes = _sizes(two._cut_batches(order, lengths, budgets, 120, 64))
    assert len(sizes) == 4 and sorted(sizes) == [2, 2, 2, 3]


def test_default_options_take_the_engine_budget(ct2_engines):
    engine = ct2_engines["llama"]
    budget = engine.batch_budget
    assert (budget.max_batch_tokens, budget.max_batch_size) == (8192, 64)  # the measured CPU set-up
    assert engine.preferred_chunk == 64 * engine.parallel
    assert GenerationOptions().max_batch_tokens is None and GenerationOptions().max_batch_size is None
    batch = [_messages(engine, i) for i in range(10)]
    before = (engine.stats.batches, engine.stats.prompt_tokens, engine.stats.padded_prompt_tokens)
    default = engine.generate(batch, GenerationOptions(max_new_tokens=NEW_TOKENS, use_cache=False))
    assert engine.stats.batches - before[0] == 1  # ten short prompts: one batch under 8192 tokens
    real = engine.stats.prompt_tokens - before[1]
    padded = engine.stats.padded_prompt_tokens - before[2]
    assert real == sum(len(engine.render(m).tokens) for m in batch) and padded >= real
    explicit = engine.generate(batch, GenerationOptions(max_new_tokens=NEW_TOKENS, max_batch_tokens=8192,
                                                        max_batch_size=64, use_cache=False))
    assert [g.tokens for g in default] == [g.tokens for g in explicit]


def test_remote_engines_keep_request_sized_batches(ct2_engines, monkeypatch):
    """A remote server batches by itself: no local GPU is probed, requests stay at the CPU's size."""
    import tower_cat.engine as engine_module

    def no_probe(*args, **kwargs):
        raise AssertionError("a remote engine must not probe local devices")

    monkeypatch.setattr(engine_module, "probe_device", no_probe)
    base = ct2_engines["llama"]
    remote = Engine(base.path, base.info, base.tokenizer, backend="openai", device="remote", device_index=[0],
                    compute_type="remote", threads=1, replicas=1, hf_model=None, cache=None, fingerprint="x")
    budget = remote.batch_budget
    assert (budget.max_batch_tokens, budget.max_batch_size) == (8192, 64) and budget.reason.startswith("remote")
    assert remote.preferred_chunk == 64


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
def test_token_id_conversion_matches_the_tokenizer(arch, tiny_tokenizers):
    """The cached vocabulary gives exactly what per-id calls into the tokenizer give (CT2's padded rows too)."""
    from tower_cat.engine import _ids_to_tokens, _tokens_to_ids

    tok = tiny_tokenizers[arch]
    n = len(tok)
    ids = list(range(n + 3))
    expected = [tok.convert_ids_to_tokens(i) for i in range(n)] + ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]
    assert _ids_to_tokens(tok, ids) == expected
    assert _tokens_to_ids(tok, expected) == ids
    odd = "\u2603not-a-token\u2603"
    assert _tokens_to_ids(tok, [odd]) == [tok.convert_tokens_to_ids(odd)]
