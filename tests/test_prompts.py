"""Task prompts: exact Tower wordings, extras layout, parsers of model output, language names."""

from __future__ import annotations

import pytest

from tower_cat import prompts
from tower_cat.languages import language_name
from tower_cat.prompts import ErrorSpan, Example, Term

CARD_SOURCE = "Um grupo de investigadores lançou um novo modelo para tarefas relacionadas com tradução."


def test_tower_instruct_wording_is_the_model_card_prompt():
    assert prompts.translate_prompt(CARD_SOURCE, "pt", "en") == (
        "Translate the following text from Portuguese into English.\n"
        f"Portuguese: {CARD_SOURCE}\nEnglish:")
    assert prompts.translate_messages(CARD_SOURCE, "pt", "en") == [
        {"role": "user", "content": prompts.translate_prompt(CARD_SOURCE, "pt", "en")}]


def test_tower_plus_wording_keeps_variant_names_and_trailing_space():
    assert prompts.translate_prompt("Hello world!", "en", "pt-PT", wording="plus") == (
        "Translate the following English source text to Portuguese (Portugal):\n"
        "English: Hello world!\nPortuguese (Portugal): ")
    # TowerInstruct was trained on plain names
    assert "Portuguese:" in prompts.translate_prompt("Hello", "en", "pt-BR")
    assert "(Brazil)" not in prompts.translate_prompt("Hello", "en", "pt-BR")


def test_base_wording_is_plain_completion():
    assert prompts.translate_prompt("My name is TowerBase.", "en", "pt", wording="base") == (
        "English: My name is TowerBase.\nPortuguese:")


def test_few_shot_examples_use_towereval_layout_before_the_query():
    text = prompts.translate_prompt("Open the file.", "en", "de",
                                    examples=[Example("Save the file.", "Speichern Sie die Datei."),
                                              ("Close it.", "Schließen Sie sie.")])
    assert text == ("Translate the following text from English into German.\n"
                    "English: Save the file.\nGerman: Speichern Sie die Datei.\n"
                    "English: Close it.\nGerman: Schließen Sie sie.\n"
                    "English: Open the file.\nGerman:")


def test_terms_and_context_come_before_examples():
    text = prompts.translate_prompt("The printer is out of paper.", "en", "de",
                                    terms=[Term("printer", "Drucker"), ("paper", "Papier")],
                                    context_before=["Check the device."], context_after=["Then retry."],
                                    examples=[Example("A", "B")])
    lines = text.split("\n")
    assert lines[0] == "Translate the following text from English into German."
    assert lines[1] == "Preceding English text, for context only: Check the device."
    assert lines[2] == "Following English text, for context only: Then retry."
    assert lines[3] == "Use these German terms: printer = Drucker; paper = Papier"
    assert lines[4:] == ["English: A", "German: B", "English: The printer is out of paper.", "German:"]


def test_post_edit_and_qe_prompts_carry_both_texts():
    pe = prompts.post_edit_messages("Hello", "Halo", "en", "de", terms=[Term("Hello", "Hallo")])
    content = pe[0]["content"]
    assert pe[0]["role"] == "user" and len(pe) == 1
    assert "English: Hello\nGerman translation: Halo\nCorrected German translation:" in content
    assert "Hello = Hallo" in content
    score = prompts.qe_messages("Hello", "Hallo", "en", "de")[0]["content"]
    assert "0 to 100" in score and score.endswith("English source: Hello\nGerman translation: Hallo\nScore:")
    spans = prompts.qe_messages("Hello", "Hallo", "en", "de", kind="spans")[0]["content"]
    assert '"error text" - minor' in spans and spans.endswith("Errors:")
    with pytest.raises(ValueError):
        prompts.qe_messages("a", "b", "en", "de", kind="stars")


def test_revision_is_a_multi_turn_chat():
    first = prompts.translate_messages("Messi scored.", "en", "zh")
    turns = prompts.revision_messages(first, "梅西进球了。", "Add an attribute for Messi.")
    assert [m["role"] for m in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == "梅西进球了。" and turns[0] == first[0]
    assert first == prompts.translate_messages("Messi scored.", "en", "zh")  # input untouched
    with pytest.raises(ValueError):
        prompts.revision_messages(first, "x", "  ")
    assert prompts.training_messages(first, "梅西进球了。")[-1] == {"role": "assistant", "content": "梅西进球了。"}


@pytest.mark.parametrize("reply,expected", [
    ("87", 0.87), ("Score: 92/100", 0.92), ("0.75", 0.75), ("4/5", 0.8), ("80%", 0.8), ("100", 1.0),
    ("I would rate it 65.", 0.65), ("0", 0.0), ("1", 0.01), ("1.0", 1.0), ("no idea", None), ("150", 1.0),
])
def test_parse_score(reply, expected):
    assert prompts.parse_score(reply) == (pytest.approx(expected) if expected is not None else None)


def test_parse_error_spans_detection_lines():
    mt = "Der Hund ist ein Katze und ein Katze."
    out = '"ein Katze" - major\n"ein Katze" - minor\n"ein Katze" - minor\n"Vogel" - major\nDone.'
    spans = prompts.parse_error_spans(out, mt)
    first = mt.index("ein Katze")
    second = mt.index("ein Katze", first + 1)
    assert spans == [ErrorSpan("ein Katze", "major", first, first + 9),
                     ErrorSpan("ein Katze", "minor", second, second + 9)]  # 3rd flag: no 3rd occurrence; Vogel absent
    assert [s.start for s in prompts.parse_error_spans(out)] == [None] * 4


def test_parse_error_spans_tags():
    mt = "Der Hund ist ein Katze und läuft schnel."
    out = "Der Hund ist <major>ein Katze</major> und läuft <minor>schnel</minor>."
    spans = prompts.parse_error_spans(out, mt)
    assert [(s.text, s.severity) for s in spans] == [("ein Katze", "major"), ("schnel", "minor")]
    for s in spans:
        assert mt[s.start:s.end] == s.text
    assert prompts.parse_error_spans("<minor>nicht da</minor>", mt) == []
    assert prompts.parse_error_spans("No errors.", mt) == []


def test_clean_translation():
    assert prompts.clean_translation("  German: Hallo Welt\n") == "German: Hallo Welt"
    assert prompts.clean_translation("German: Hallo Welt", "de") == "Hallo Welt"
    assert prompts.clean_translation("Olá<|im_end|>junk", "pt") == "Olá"
    assert prompts.clean_translation("Portuguese (Brazil): Olá", "pt-BR") == "Olá"


@pytest.mark.parametrize("code,plain,variant", [
    ("en", "English", "English"), ("en-US", "English", "English"), ("de_AT", "German", "German"),
    ("pt-PT", "Portuguese", "Portuguese (Portugal)"), ("pt_BR", "Portuguese", "Portuguese (Brazil)"),
    ("zh-Hant", "Chinese", "Chinese (Traditional)"), ("zh-TW", "Chinese", "Chinese (Traditional)"),
    ("zh-CN", "Chinese", "Chinese (Simplified)"), ("zh", "Chinese", "Chinese"),
    ("es-419", "Spanish", "Spanish (Latin America)"), ("es-ES", "Spanish", "Spanish"),
    ("nb", "Norwegian", "Norwegian (Bokmål)"), ("KO", "Korean", "Korean"),
    ("German", "German", "German"), ("Portuguese (Portugal)", "Portuguese (Portugal)", "Portuguese (Portugal)"),
])
def test_language_names(code, plain, variant):
    assert language_name(code, variant=False) == plain
    assert language_name(code) == variant


def test_unknown_language_code_is_an_error():
    with pytest.raises(ValueError, match="unknown language code"):
        language_name("xx")
    with pytest.raises(ValueError):
        prompts.translate_prompt("a", "en", "de", wording="fancy")
