"""Models and languages: the model's known languages (model cards, convert --languages) and warnings, convert
--family, and BayLing's published conversation format (ictnlp/BayLing bayling/conversation.py, "BayLing")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tower_cat import pipeline, prompts
from tower_cat.convert import (BASE, BAYLING, TOWER_V1_LANGUAGES, ModelInfo, detect_family, inspect_model)
from tower_cat.core import SegmentRequest, TranslationOptions, Translator
from tower_cat.engine import Engine
from tower_cat.errors import ModelError
from tower_cat.languages import outside_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"

# BayLing's "BayLing" template (bayling/conversation.py at 8f6ecb91) written out by hand for one and two turns:
# system + "\n", "### Instruction:\n" + message + "\n", "### Response:\n" [+ answer + "</s>" + "\n"].
SYSTEM = ("I am an intelligent language assistant developed by the NLP Group of ICT/CAS.\n"
          "Below is a dialog consisting of instructions and responses. Write a response that completes the request.\n")
ONE_TURN = SYSTEM + "\n### Instruction:\nProvide the German translation for this sentence: Hello world\n### Response:\n"
TWO_TURNS = (SYSTEM + "\n### Instruction:\nProvide the German translation for this sentence: Hello world\n"
             "### Response:\nHallo Welt</s>\n### Instruction:\nUse the formal register.\n### Response:\n")


def _cli(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tower_cat.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bayling(tiny_llama, tmp_path_factory):
    """The tiny Llama converted with --family bayling --languages en,zh,de."""
    out = tmp_path_factory.mktemp("bayling") / "model"
    run = _cli("convert", tiny_llama.hf_path, out, "--family", "bayling", "--languages", "en,zh,de")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "bayling (llama, given)" in run.stdout and "languages: en, zh, de (convert --languages)" in run.stdout
    return out


def test_the_conversation_is_baylings_own_format():
    user = [{"role": "user", "content": "Provide the German translation for this sentence: Hello world"}]
    assert prompts.bayling_conversation(user) == ONE_TURN
    turns = prompts.revision_messages(user, "Hallo Welt", "Use the formal register.")
    assert prompts.bayling_conversation(turns) == TWO_TURNS
    assert prompts.bayling_conversation(prompts.training_messages(user, "Hallo Welt")) == \
        TWO_TURNS.split("### Instruction:\nUse")[0]
    with pytest.raises(Exception, match="alternate"):
        prompts.bayling_conversation([{"role": "assistant", "content": "x"}])
    # the translation request as BayLing's scripts/translate.py and constrained_translate.py word it
    assert prompts.translate_prompt("Hello world", "en", "de", wording="bayling") == \
        "Provide the German translation for this sentence: Hello world"
    assert prompts.translate_prompt("Print it", "en", "de", wording="bayling", terms=[("print", "drucken")]) == \
        "Provide the German translation for this sentence: Print it\nMake sure to include these words: drucken"
    msgs = prompts.add_instructions(prompts.translate_messages("Hi", "en", "de", wording="bayling"), ["Be brief"],
                                    wording="bayling")
    assert msgs[0]["content"] == ("Provide the German translation for this sentence: Hi\n"
                                  "Follow this instruction: Be brief")


def test_convert_family_bayling_renders_exactly_the_published_format(bayling):
    info = ModelInfo.load(bayling)
    assert (info.family, info.family_source, info.wording, info.end_tokens) == (BAYLING, "given", "bayling", ["</s>"])
    assert info.languages == ["en", "zh", "de"] and info.languages_source == "convert --languages"
    engine = Engine.load(bayling, device="cpu", threads=1, cache=None)
    try:
        core = Translator(engine, options=TranslationOptions(context_window=0))
        prepared = core.prepare_translation(SegmentRequest.coerce("Hello world"), "en", "de")
        rendered = engine.render(prepared.messages)
        assert rendered.text == ONE_TURN
        bos = engine.tokenizer.bos_token_id
        assert rendered.ids[0] == bos and rendered.ids.count(bos) == 1
        assert list(rendered.ids[1:]) == engine.tokenizer(ONE_TURN, add_special_tokens=False)["input_ids"]
        # an interactive session: every turn in the same format, the earlier answer closed with </s>
        from tower_cat.sessions import SessionManager

        manager = SessionManager(engine, bayling.parent / "sessions.sqlite", options=TranslationOptions(
            max_new_tokens=8).generation_options())
        session = manager.start("Hello world", "en", "de")
        session = manager.revise(session, "Use the formal register.")
        text = engine.render(manager.prompt(session)).text
        assert text.startswith(SYSTEM + "\n### Instruction:\nProvide the German translation for this sentence: "
                                        "Hello world\n### Response:\n")
        assert text.count("</s>\n### Instruction:\nUse the formal register.") == 1 and text.endswith("### Response:\n")
        assert engine.stats.generator_loads == 1  # the session really generated
        manager.store.close()
    finally:
        engine.close()


def test_bayling_is_detected_from_its_name_when_it_ships_no_chat_template(tiny_llama, tmp_path):
    import shutil

    import transformers

    for name, family in (("bayling-2-7b-tiny", BAYLING), ("bayling-llama-3-8b-tiny", BASE), ("other-7b", BASE)):
        folder = tmp_path / name
        shutil.copytree(tiny_llama.hf_path, folder)
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        tok.chat_template = None
        (folder / "chat_template.jinja").unlink(missing_ok=True)
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        cfg.pop("chat_template", None)
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
        assert inspect_model(folder).family == family, name


def test_family_override_is_checked(tiny_llama, tiny_models):
    import transformers

    config = transformers.AutoConfig.from_pretrained(tiny_llama.hf_path)
    tok = transformers.AutoTokenizer.from_pretrained(tiny_llama.hf_path)
    assert detect_family(config, tok).family == "tower_instruct"
    base = detect_family(config, tok, family="base")
    assert (base.family, base.wording, base.family_source) == ("base", "base", "given")
    with pytest.raises(ModelError, match="seq2seq"):
        detect_family(config, tok, family="seq2seq")
    with pytest.raises(ModelError, match="unknown model family"):
        detect_family(config, tok, family="vicuna")
    tok.chat_template = None
    with pytest.raises(ModelError, match="chat template"):
        detect_family(config, tok, family="chat")
    bad = _cli("convert", tiny_llama.hf_path, tiny_llama.hf_path.parent / "x", "--languages", "en,klingon")
    assert bad.returncode == 2 and "klingon" in bad.stderr


def test_tower_models_get_their_cards_languages(tiny_models):
    import transformers

    llama = tiny_models["llama"].hf_path
    config = transformers.AutoConfig.from_pretrained(llama)
    tok = transformers.AutoTokenizer.from_pretrained(llama)
    info = detect_family(config, tok, name="Unbabel/TowerInstruct-7B-v0.2")
    assert info.languages == list(TOWER_V1_LANGUAGES) and "TowerInstruct-7B-v0.2" in info.languages_source
    assert detect_family(config, tok, name="some/llama-chatml").languages is None
    gemma = tiny_models["gemma2"].hf_path
    plus = detect_family(transformers.AutoConfig.from_pretrained(gemma),
                         transformers.AutoTokenizer.from_pretrained(gemma), name="Unbabel/Tower-Plus-2B")
    assert plus.family == "tower_plus_gemma2" and len(plus.languages) == 26 and "ja" in plus.languages
    assert not outside_model(plus.languages, "pt-AO") and not outside_model(plus.languages, "no")
    assert outside_model(info.languages, "ja") and not outside_model(None, "ja")


def test_a_language_outside_the_model_is_warned_about_and_recorded(tiny_llama, corpus, tmp_path):
    model = tmp_path / "en-de-pt"
    run = _cli("convert", tiny_llama.hf_path, model, "--languages", "en,de,pt")
    assert run.returncode == 0, run.stderr[-2000:]
    french = corpus / "xliff12/okapi/RB-11-Test01.xlf"  # en -> fr
    run = _cli("translate", french, "-o", tmp_path / "fr.xlf", "--model", model, "--no-cache", "--device", "cpu",
               "--threads", "1", "--max-new-tokens", "4", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = json.loads(run.stdout)["warnings"]
    assert len(warnings) == 1 and "the target language fr is not among the model's languages (en, de, pt; " \
                                  "convert --languages)" in warnings[0] and str(french) in warnings[0]
    run = _cli("translate", french, "--model", model, "--device", "cpu", "--dry-run")
    said = " ".join(run.stderr.split())
    assert "warning:" in said and "the target language fr is not among the model's languages" in said
    engine = Engine.load(model, device="cpu", threads=1, cache=None)
    try:  # en -> de: known, nothing said
        summary = pipeline.run_files("translate", [SAMPLES / "tower-notes.en-de.xlf"], [tmp_path / "de.xlf"], engine,
                                     options=TranslationOptions(max_new_tokens=4))
    finally:
        engine.close()
    assert summary.warnings == [] and "warnings" not in summary.as_dict()
