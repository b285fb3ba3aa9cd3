"""Instruction-following translation: instructions -> verifiable checks, each kind passing and failing."""

from __future__ import annotations

import json

import pytest

from tower_cat import prompts
from tower_cat.instructions import (Check, CheckResult, InstructionReport, InstructionSet, choose, merge_checks,
                                    parse_instruction, verify)


def kinds(text: str, **kw) -> list[tuple[str, object]]:
    return [(c.kind, c.value) for c in parse_instruction(text, **kw)]


# ------------------------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("text, expected", [
    ("max 40 characters", [("max_length", 40)]),
    ("Maximum 40 chars", [("max_length", 40)]),
    ("at most 12 characters", [("max_length", 12)]),
    ("no more than 25 characters, please", [("max_length", 25)]),
    ("up to 18 chars", [("max_length", 18)]),
    ("40 characters max", [("max_length", 40)]),
    ("maximum length: 20", [("max_length", 20)]),
    ("shorter than 30 chars", [("max_length", 29)]),
    ("Keep it under 25 characters", [("max_length", 24)]),
    ("less than 10 letters", [("max_length", 9)]),
    ("max 40 characters, better under 30 characters", [("max_length", 29)]),  # the tightest limit
])
def test_length_limits(text, expected):
    assert kinds(text) == expected


def test_the_units_own_limit():
    assert kinds("fit the maxwidth", max_length=33) == [("max_length", 33)]
    assert kinds("respect the max length", max_length=20) == [("max_length", 20)]
    assert kinds("stay within the length limit", max_length=15) == [("max_length", 15)]
    assert kinds("fit the maxwidth") == []  # no limit known: unverifiable


@pytest.mark.parametrize("text, expected", [
    ("use 'Notiz'", [("required", "Notiz")]),
    ('Use the term "Notiz"', [("required", "Notiz")]),
    ("translate 'note' as 'Notiz'", [("required", "Notiz")]),
    ("don't use 'Vermerk'", [("forbidden", "Vermerk")]),
    ("Do not use the word “Vermerk”", [("forbidden", "Vermerk")]),
    ("never use 'Vermerk' or 'Anmerkung'", [("forbidden", "Vermerk"), ("forbidden", "Anmerkung")]),
    ("avoid 'Vermerk'", [("forbidden", "Vermerk")]),
    ("avoid Vermerk", [("forbidden", "Vermerk")]),
    ("use 'Notiz' instead of 'Vermerk'", [("required", "Notiz"), ("forbidden", "Vermerk")]),
    ("don't use 'Vermerk', use 'Notiz'", [("forbidden", "Vermerk"), ("required", "Notiz")]),
    ("keep 'Tower Notes' in English", [("keep", "Tower Notes")]),
    ("leave 'Tower Notes' untranslated", [("keep", "Tower Notes")]),
    ("do not translate 'Tower Notes'", [("keep", "Tower Notes")]),
    ("title case", [("case", "title")]),
    ("Use Title Case for this button", [("case", "title")]),
    ("ALL CAPS", [("case", "upper")]),
    ("make it uppercase", [("case", "upper")]),
    ("sentence case please", [("case", "sentence")]),
    ("all lowercase", [("case", "lower")]),
    ("no trailing punctuation", [("no_trailing_punctuation", None)]),
    ("don't end with a period", [("no_trailing_punctuation", None)]),
    ("no full stop at the end", [("no_trailing_punctuation", None)]),
    ("40 chars max, title case, no final period",
     [("max_length", 40), ("case", "title"), ("no_trailing_punctuation", None)]),
])
def test_words_case_punctuation(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize("text", ["more formal", "make it friendlier", "avoid jargon", "shorter",
                                  "use a neutral tone"])
def test_unverifiable_instructions(text):
    assert kinds(text) == []
    iset = InstructionSet.parse([text])
    assert iset.unverifiable == [text] and not iset.checks and iset.instructions == [text]


# ------------------------------------------------------------------------------------------------ verifying

def run(kind, value, text, lang="de") -> CheckResult:
    return verify(Check(kind, value, "test"), text, lang)


def test_max_length_pass_and_fail():
    assert run("max_length", 10, "Speichern").passed
    assert run("max_length", 9, "Speichern").passed  # exactly at the limit
    r = run("max_length", 8, "Speichern")
    assert not r.passed and r.found == "9" and "9 characters" in r.message and "8" in r.message


def test_required_word_pass_and_fail():
    assert run("required", "Notiz", "Neue Notiz anlegen").passed
    assert run("required", "Notiz", "Notizen anzeigen").passed        # inflected
    assert run("required", "Notiz", "Alle notizen").passed            # case-insensitive
    assert run("required", "Notiz", "Notizvorlagen").passed           # German compound
    r = run("required", "Notiz", "Neuen Vermerk anlegen")
    assert not r.passed and "Notiz" in r.message


def test_forbidden_word_pass_and_fail():
    assert run("forbidden", "Vermerk", "Neue Notiz anlegen").passed
    r = run("forbidden", "Vermerk", "Neuen Vermerk anlegen")
    assert not r.passed and r.found == "Vermerk" and "must not be used" in r.message
    assert not run("forbidden", "Vermerk", "Alle Vermerke").passed    # inflected forms count too


def test_keep_in_source_pass_and_fail():
    assert run("keep", "Tower Notes", "Öffnen Sie Tower Notes").passed
    assert not run("keep", "Tower Notes", "Öffnen Sie Turm-Notizen").passed
    assert not run("keep", "Tower Notes", "Öffnen Sie tower notes").passed  # verbatim, case-sensitive


@pytest.mark.parametrize("style, good, bad", [
    ("title", "Save All Changes", "Save all changes"),
    ("title", "Save the File", "save the File"),              # minor words may stay lower case, not the first
    ("upper", "ALLE SPEICHERN", "Alle speichern"),
    ("upper", "STRAßE", "Straße"),
    ("sentence", "Save all changes", "Save All Changes"),
    ("sentence", "Open the Tower Notes app", "open the file"),  # a proper noun may keep its capitals
    ("sentence", "Save", "SAVE ALL"),
    ("lower", "alle speichern", "Alle speichern"),
])
def test_case_styles(style, good, bad):
    assert run("case", style, good, "en").passed
    r = run("case", style, bad, "en")
    assert not r.passed and prompts.CASE_STYLES[style] in r.message


def test_sentence_case_in_german_allows_capitalised_nouns():
    assert run("case", "sentence", "Alle Änderungen Speichern", "de").passed
    assert not run("case", "sentence", "alle Änderungen", "de").passed


def test_no_trailing_punctuation_pass_and_fail():
    assert run("no_trailing_punctuation", None, "Alle speichern").passed
    assert run("no_trailing_punctuation", None, "Speichern (Beta)").passed
    for text, mark in [("Alle speichern.", "."), ("Speichern… ", "…"), ("Fertig!", "!"), ("保存。", "。")]:
        r = run("no_trailing_punctuation", None, text)
        assert not r.passed and r.found == mark and mark in r.message


# ------------------------------------------------------------------------------------------------ sets, merging

def test_instruction_set_parses_verifies_and_feeds_back():
    iset = InstructionSet.parse(["max 20 characters", "use 'Notiz'", "more formal"])
    assert [c.kind for c in iset.checks] == ["max_length", "required"]
    assert iset.unverifiable == ["more formal"]
    results = iset.verify("Einen neuen Vermerk für dieses Dokument anlegen", "de")
    assert [r.passed for r in results] == [False, False]
    fb = iset.feedback(results)
    assert fb == prompts.instruction_feedback([r.message for r in results])
    assert "at most 20 characters" in fb and "Notiz" in fb and fb.endswith("revised translation only.")
    assert iset.feedback(iset.verify("Notiz anlegen", "de")) is None

    msgs = iset.retry_messages([{"role": "user", "content": "Translate ..."}], "Einen neuen Vermerk", results)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"] == "Einen neuen Vermerk" and msgs[2]["content"] == fb


def test_instructions_go_after_the_task_line():
    msgs = prompts.translate_messages("Save", "en", "de")
    out = InstructionSet.parse(["max 20 characters"]).apply(msgs)
    assert out[0]["content"] == ("Translate the following text from English into German.\n"
                                 "Follow this instruction: max 20 characters\nEnglish: Save\nGerman:")
    two = prompts.add_instructions(msgs, ["max 20 characters", "title case"])
    assert "Follow these instructions:\n- max 20 characters\n- title case\nEnglish: Save" in two[0]["content"]
    assert prompts.add_instructions(msgs, []) == msgs
    base = prompts.add_instructions(prompts.translate_messages("Save", "en", "de", wording="base"), ["x"],
                                    wording="base")
    assert base[0]["content"].startswith("Follow this instruction: x\n")


def test_newer_instructions_replace_clashing_older_ones():
    older = InstructionSet.parse(["max 40 characters", "don't use 'Notiz'", "title case"]).checks
    newer = InstructionSet.parse(["max 30 characters", "use 'Notiz'", "all caps"]).checks
    merged = merge_checks(older, newer)
    assert [(c.kind, c.value) for c in merged] == [("max_length", 30), ("required", "Notiz"), ("case", "upper")]
    # within one set, a later instruction wins too
    assert [(c.kind, c.value) for c in InstructionSet.parse(["use 'A'", "avoid 'A'"]).checks] == [("forbidden", "A")]


def test_choose_keeps_the_better_result():
    c = Check("max_length", 10)
    bad = [verify(c, "x" * 15)]
    worse = [verify(c, "x" * 20)]
    good = [verify(c, "x" * 5)]
    assert choose(bad, good) and not choose(bad, worse) and choose(bad, [verify(c, "y" * 15)])


def test_report_as_dict():
    iset = InstructionSet.parse(["max 5 characters", "be nice"])
    rep = InstructionReport(iset.verify("Speichern"), iset.unverifiable, retried=True, first_failed=["x"])
    d = rep.as_dict()
    assert d["ok"] is False and d["retried"] and d["unverifiable"] == ["be nice"]
    assert d["checks"][0] == {"kind": "max_length", "value": 5, "instruction": "max 5 characters", "passed": False,
                              "message": prompts.check_failure_text("max_length", length=9, limit=5), "found": "9"}


# ------------------------------------------------------------------------------------------------ pipeline

XLIFF = """<?xml version="1.0" encoding="UTF-8"?>
<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">
  <file original="ui" source-language="en" target-language="de" datatype="plaintext">
    <body>
      <trans-unit id="new" maxwidth="14" size-unit="char"><source>Create a new note</source></trans-unit>
      <trans-unit id="tag"><source>Click <g id="1">Save</g> now</source></trans-unit>
    </body>
  </file>
</xliff>
"""


class ScriptedEngine:
    """Answers a translation request with ``first[source]`` and a retry (feedback turn) with ``retry[source]``."""

    def __init__(self, first: dict[str, str], retry: dict[str, str]):
        from tower_cat.engine import EngineStats

        self.first, self.retry = first, retry
        self.calls: list[list] = []
        self.info = type("Info", (), {"wording": "instruct"})()
        self.stats = EngineStats()
        self.context_length = 4096

    def render(self, messages):
        return type("R", (), {"tokens": ["t"] * 4})()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def budget(self, source, opts) -> int:
        return 10

    def generate(self, prompts_, options=None, *, sources=None):
        from tower_cat.engine import Generation, Hypothesis

        self.calls.append([list(p) for p in prompts_])
        out = []
        for messages, src in zip(prompts_, sources):
            table = self.retry if messages[-1]["content"].startswith("The translation does not follow") else self.first
            out.append(Generation((Hypothesis(table[src], (), -0.1, False),)))
        return out


def test_translate_pipeline_checks_instructions_and_retries_once(tmp_path):
    from tower_cat import formats, pipeline

    path = tmp_path / "ui.xlf"
    path.write_text(XLIFF, encoding="utf-8")
    doc = formats.load(path)
    engine = ScriptedEngine(first={"Create a new note": "Neuen Vermerk anlegen",
                                   "Click <1>Save</1> now": "Klicken Sie jetzt auf <1>Notiz</1>"},
                            retry={"Create a new note": "Notiz anlegen", "Click <1>Save</1> now": "x"})
    opts = pipeline.PipelineOptions(instructions=("fit the maxwidth", "use 'Notiz'", "be concise"), term_repair=0)
    summary = pipeline.translate_documents([doc], engine, options=opts)
    results = {r.unit: r for r in summary.files[0].results}

    first_prompt = engine.calls[0][0][0]["content"]
    assert ("Translate the following text from English into German.\nFollow these instructions:\n"
            "- fit the maxwidth\n- use 'Notiz'\n- be concise\n") in first_prompt

    new = results["new"].instructions
    assert new["retried"] and new["ok"] and [c["kind"] for c in new["checks"]] == ["max_length", "required"]
    assert new["checks"][0]["value"] == 14 and new["unverifiable"] == ["be concise"]
    assert new["first_failed"] == [prompts.check_failure_text("max_length", length=21, limit=14),
                                   prompts.check_failure_text("required", word="Notiz")]
    assert doc.units[0].target.text == "Notiz anlegen"
    # the retry is the model's own answer + the failed checks, as a further turn
    retry_prompt = engine.calls[1][0]
    assert [m["role"] for m in retry_prompt] == ["user", "assistant", "user"]
    assert retry_prompt[1]["content"] == "Neuen Vermerk anlegen"

    tag = results["tag"].instructions  # no maxwidth on this unit: only the word check, passed the first time
    assert tag["ok"] and not tag["retried"] and [c["kind"] for c in tag["checks"]] == ["required"]
    assert len(engine.calls) == 2 and len(engine.calls[1]) == 1
    assert json.loads(summary.to_json())["files"][0]["results"][0]["instructions"]["retried"] is True


def test_translate_command_has_the_instruction_option():
    from click.testing import CliRunner

    from tower_cat.cli import cli

    out = CliRunner().invoke(cli, ["translate", "--help"]).output
    assert "--instruction" in out
