"""`tower-cat refine`: an interactive session driven through a pseudo-terminal, and the non-interactive mode."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from tower_cat.cli.refine import word_diff

pexpect = pytest.importorskip("pexpect")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("tower-cat")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from tower_cat.cli import main; main()"]


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, TOWER_CAT_CACHE=str(tmp_path / "cache.sqlite"), HF_HUB_OFFLINE="1",
             TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", COLUMNS="200", LINES="50")
    return e


def test_two_turn_session_in_a_terminal_then_accept(tiny_llama, tmp_path, env):
    from tower_cat.tm import TranslationMemory

    tm_path = tmp_path / "tm.sqlite"
    cmd = _command() + ["refine", "--model", str(tiny_llama.ct2_path), "--source", "en", "--target", "de",
                        "--tm", str(tm_path), "--threads", "1", "--max-new-tokens", "12",
                        "The printer is out of paper."]
    child = pexpect.spawn(cmd[0], cmd[1:], env=env, encoding="utf-8", timeout=90, dimensions=(50, 200))
    log: list[str] = []
    try:
        child.expect("Translation")
        child.expect("instruction>")
        child.sendline("more formal")
        child.expect("Revision 1")
        child.expect("instruction>")
        log.append(child.before)
        child.sendline("max 30 characters")
        child.expect("Revision 2")
        child.expect("instruction>")
        turn2 = ANSI.sub("", child.before)
        assert "max length 30" in turn2  # the check is reported
        child.sendline(":undo")
        child.expect("undone")
        child.expect("instruction>")
        child.sendline(":bogus")
        child.expect("unknown command")
        child.expect("instruction>")
        child.sendline("max 30 characters")
        child.expect("Revision 2")
        child.expect("instruction>")
        child.sendline(":accept")
        child.expect("Accepted")
        child.expect(pexpect.EOF)
        tail = ANSI.sub("", child.before)
        assert "revision 2" in tail and str(tm_path) in tail
    finally:
        child.close()
    assert child.exitstatus == 0, log
    with TranslationMemory(tm_path) as tm:
        entries = list(tm.iter_entries("en", "de"))
        assert len(entries) == 1
        src, tgt, source, target, info = entries[0]
        assert source.text == "The printer is out of paper." and info["origin"] == "interactive"
        assert tm.lookup("The printer is out of paper.", "en", "de")[0].score == 100


def test_instructions_without_prompting(tiny_llama, tmp_path, env, monkeypatch):
    from click.testing import CliRunner

    from tower_cat.cli import cli

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sessions = tmp_path / "sessions.sqlite"
    args = ["refine", "--model", str(tiny_llama.ct2_path), "-s", "en", "-t", "de", "--threads", "1",
            "--max-new-tokens", "12", "--sessions", str(sessions), "Click <1>Save</1> to keep changes<2/>",
            "-i", "more formal", "-i", "no trailing punctuation", "--json"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["instruction"] for t in data["turns"]] == [None, "more formal", "no trailing punctuation"]
    assert [c["kind"] for c in data["checks"]] == ["no_trailing_punctuation"]
    for turn in data["turns"]:  # the tags the user typed come back, each once
        assert turn["target"].count("<1>") == 1 and turn["target"].count("</1>") == 1
        assert turn["target"].count("<2/>") == 1
    # plain output, resumed from the session file
    result = CliRunner().invoke(cli, ["refine", "--model", str(tiny_llama.ct2_path), "-s", "en", "-t", "de",
                                      "--threads", "1", "--max-new-tokens", "12", "--sessions", str(sessions),
                                      "--resume", data["id"], "-i", "shorter"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("<1>") == 1 and result.stdout.count("<2/>") == 1


def test_word_diff_marks_removed_and_added_words():
    diff = word_diff("Klicken Sie auf Speichern.", "Klicken Sie bitte auf <1>Sichern</1>.")
    assert diff.plain == "Klicken Sie bitte auf Speichern<1>Sichern</1>."
    styles = {diff.plain[s.start:s.end]: str(s.style) for s in diff.spans}
    assert styles["Speichern"] == "red strike" and styles["<1>Sichern</1>"] == "bold green"
    assert styles["bitte "] == "bold green"
