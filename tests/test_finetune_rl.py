"""The verifiable rewards of `tower-cat finetune rl`: our own checks, scored on known answers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tower_cat import prompts

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _completion(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_tags_reward():
    from tower_cat.finetune.rl import tags_reward

    src = "Click <1>Save</1> to keep <2/> notes."
    got = tags_reward(completions=[_completion("Klicken Sie auf <1>Speichern</1>, um <2/> Notizen zu behalten."),
                                   _completion("Klicken Sie auf <1>Speichern</1> <1>x</1> <2/>."),
                                   _completion("<1>Speichern</1> <2/> <1><2/>"),
                                   _completion("Speichern")],
                      source=[src] * 4)
    assert got[0] == 1.0 and got[1] == 0.5 and got[2] < 1.0 and got[3] < 1.0
    assert tags_reward(completions=[_completion("Datei")], source=["File"]) == [None]   # no tags: not scored


def test_terms_reward_uses_the_glossary():
    from tower_cat.finetune.rl import terms_reward
    from tower_cat.terminology import Glossary

    glossary = Glossary.load(SAMPLES / "glossary.de.csv", src_lang="en", tgt_lang="de")
    pairs = glossary.prompt_terms("Share the notebook with your team", "en", "de")
    assert pairs, "the sample glossary has a term in this sentence"
    reward = terms_reward(glossary)
    good = "Teilen Sie " + " und ".join(t for _, t in pairs)    # every term's preferred target
    bad = "Teilen Sie das Ding mit den Leuten"
    got = reward(completions=[_completion(good), _completion(bad), _completion("Datei")],
                 source=["Share the notebook with your team"] * 2 + ["File"], src_lang=["en"] * 3,
                 tgt_lang=["de"] * 3, has_terms=[True, True, False])
    assert got[0] == 1.0 and got[1] < 1.0 and got[2] is None


def test_instruction_and_chrf_rewards():
    from tower_cat.finetune.rl import chrf_reward, instructions_reward

    got = instructions_reward(completions=[_completion("Speichern"), _completion("Jetzt alles speichern bitte")],
                              instructions=[["Use at most 12 characters."]] * 2, tgt_lang=["de", "de"])
    assert got == [1.0, 0.0]
    assert instructions_reward(completions=[_completion("x")], instructions=[[]], tgt_lang=["de"]) == [None]
    same, other = chrf_reward(completions=[_completion("Notiz speichern"), _completion("Papier")],
                              target=["Notiz speichern", "Notiz speichern"])
    assert same == pytest.approx(1.0) and other < 0.2


def test_rl_rows_are_runtime_prompts_with_checkable_instructions():
    from tower_cat.finetune.data import DataConfig, build_datasets
    from tower_cat.finetune.rl import rl_rows
    from tower_cat.instructions import InstructionSet
    from tower_cat.terminology import Glossary

    glossary = Glossary.load(SAMPLES / "glossary.de.csv", src_lang="en", tgt_lang="de")
    ds = build_datasets([SAMPLES / "tower-notes.tmx"], config=DataConfig(source="en", targets=("de",), heldout=10))
    pairs = list(ds.train[:60])
    rows = rl_rows(pairs, glossary=glossary, instruction_rate=1.0, seed=random.Random(0).randint(0, 9))
    assert len(rows) == len(pairs) and any(r["has_terms"] for r in rows)
    with_inst = [r for r in rows if r["instructions"]]
    assert with_inst
    for row in with_inst:   # the TM target itself passes the instruction it is trained to follow
        assert all(c.passed for c in InstructionSet.parse(row["instructions"]).verify(
            " ".join(row["target"].split()), "de"))
        assert row["prompt"] == prompts.add_instructions(
            prompts.translate_messages(row["source"], "en", "de", terms=_terms(row["prompt"])), row["instructions"])


def _terms(messages):
    line = next((ln for ln in messages[0]["content"].split("\n") if ln.startswith("Use these ")), None)
    return [tuple(t.split(" = ")) for t in line.split(": ", 1)[1].split("; ")] if line else []
