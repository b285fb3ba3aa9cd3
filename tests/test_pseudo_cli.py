"""pseudo.py and the file commands (inspect, validate, pseudo) end to end on small files written here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from tower_cat import codes
from tests.cli_runner import run_cli
from tower_cat.document import CodeKind, Document, InlineCode, Segment, Unit
from tower_cat.pseudo import PSEUDO_LOCALE, accent, pseudo_document, pseudo_markup, pseudo_text

# ------------------------------------------------------------------------------------------------ files

XLIFF12 = """<?xml version="1.0" encoding="UTF-8"?>
<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">
  <file original="app.json" source-language="en-US" target-language="fr-FR" datatype="plaintext">
    <body>
      <trans-unit id="save"><source>Click <g id="1" ctype="bold">Save</g> to keep <x id="2"/> changes</source></trans-unit>
      <trans-unit id="link"><source>Read our <bpt id="1">&lt;a href="x"&gt;</bpt>privacy policy<ept id="1">&lt;/a&gt;</ept>.</source></trans-unit>
      <trans-unit id="count"><source><ph id="1">{count}</ph> notes &amp; files &lt;1&gt; selected</source></trans-unit>
      <trans-unit id="nested"><source><g id="1">Bold <g id="2">and italic</g></g> text</source></trans-unit>
      <trans-unit id="locked" translate="no"><source>Tower Notes</source></trans-unit>
      <trans-unit id="done"><source>Cancel</source><target state="final">Annuler</target></trans-unit>
      <trans-unit id="plain"><source>Hello world</source></trans-unit>
    </body>
  </file>
</xliff>
"""

XLIFF2 = """<?xml version="1.0" encoding="UTF-8"?>
<xliff xmlns="urn:oasis:names:tc:xliff:document:2.0" version="2.0" srcLang="en-US">
  <file id="f1">
    <unit id="u1">
      <segment><source>Press <pc id="1">Ctrl+S</pc> to save.</source></segment>
    </unit>
    <unit id="u2">
      <segment><source>Read <sc id="1"/>the policy<ec startRef="1"/> and <ph id="2"/> more.</source></segment>
    </unit>
    <unit id="u3" translate="no">
      <segment state="final"><source>Settings</source></segment>
    </unit>
  </file>
</xliff>
"""

PO = r'''msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Language: de\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#, c-format
msgid "Uploading %s…"
msgstr ""

#, python-brace-format
msgid "Hello, {name}!"
msgstr "Hallo, {name}!"

#, c-format
msgid "One file"
msgid_plural "%d files"
msgstr[0] ""
msgstr[1] ""

msgid "Plain <1> text"
msgstr ""
'''

MALFORMED = """<?xml version="1.0" encoding="UTF-8"?>
<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">
  <file original="a" source-language="en" target-language="de" datatype="plaintext">
    <body><trans-unit id="1"><source>Broken</source></body>
  </file>
</xliff>
"""

XXE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE xliff [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">
  <file original="a" source-language="en" target-language="de" datatype="plaintext">
    <body><trans-unit id="1"><source>&xxe;</source></trans-unit></body>
  </file>
</xliff>
"""

LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE xliff [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">
  <file original="a" source-language="en" target-language="de" datatype="plaintext">
    <body><trans-unit id="1"><source>&lol9;</source></trans-unit></body>
  </file>
</xliff>
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


run = run_cli  # (capsys, *args) -> (exit code, stdout, stderr)


def xliff12():
    return pytest.importorskip("tower_cat.formats.xliff12", reason="XLIFF 1.2 module not written yet")


def po():
    return pytest.importorskip("tower_cat.formats.po", reason="PO module not written yet")


def xliff2():
    return pytest.importorskip("tower_cat.formats.xliff2", reason="XLIFF 2 module not written yet")


def assert_codes_carried(doc: Document) -> int:
    """Every unit with a new target has every source code, properly paired; returns how many were checked."""
    n = 0
    for unit in doc.units:
        if unit.protected or not unit.has_target:
            continue
        assert Counter(unit.target.codes) == Counter(unit.source.codes), unit.id
        assert codes.check(unit.source, unit.target) == [], unit.id
        n += 1
    return n


# ------------------------------------------------------------------------------------------------ pseudo text

def test_accent_maps_letters_only():
    assert accent("Save changes") == "Šáṽé çĥáñĝéš"
    assert accent("a-e 123") == "á-é 123"


@pytest.mark.parametrize("placeholder", ["%s", "%1$s", "%(name)s", "%5.2f", "%%", "{0}", "{name}", "{{var}}",
                                         "${x}", "$HOME", "&amp;", "&#169;", "<b>", "</b>", "<br/>", "<1>", "</2>",
                                         "<3/>", "https://example.com/a?b=c", "\\n", "ann@example.com"])
def test_pseudo_text_keeps_placeholders(placeholder):
    out = pseudo_text(f"Save {placeholder} now")
    assert placeholder in out
    assert out.startswith("[Šáṽé ") and out.endswith("]")


def test_pseudo_text_expansion_and_brackets():
    text = "Hello world"  # 11 chars -> 30 % = 4 more (ceil 3.3)
    out = pseudo_text(text)
    assert out.startswith("[") and out.endswith("]")
    assert len(out) - 2 >= len(text) * 1.3
    assert len(pseudo_text(text, expansion=0)) == len(text) + 2
    assert len(pseudo_text(text, expansion=1.0)) - 2 == 2 * len(text)
    assert pseudo_text("") == "" and pseudo_text("  ") == "  "
    with pytest.raises(ValueError):
        pseudo_text("x", expansion=-1)


def test_pseudo_markup_changes_only_text_and_parses_back():
    seg = Segment(["Click ", InlineCode("1", CodeKind.OPEN, "<g id='1'>"), "Save",
                   InlineCode("1", CodeKind.CLOSE, "</g>"), " <1> & &lt; ", InlineCode("2", CodeKind.STANDALONE, "<x/>")])
    r = codes.render(seg)
    out = pseudo_markup(r.text)
    assert out.startswith("[Çļíçķ <1>Šáṽé</1> &lt;1> & &amp;lt; <2/>")
    res = codes.parse(r, out)
    assert res.ok and res.problems == []
    assert Counter(res.segment.codes) == Counter(seg.codes)
    assert "<1>" in res.segment.text and "&lt;" in res.segment.text  # literal text survived, unescaped


def _unit(uid, parts, **kw):
    return Unit(uid, Segment(parts), **kw)


def test_pseudo_document_in_memory():
    g1, g1c = InlineCode("1", CodeKind.OPEN, "<g id='1'>"), InlineCode("1", CodeKind.CLOSE, "</g>")
    doc = Document(Path("x.xlf"), "xliff12", [
        _unit("a", ["Click ", g1, "Save", g1c]),
        _unit("b", ["Locked"], locked=True),
        _unit("c", ["Final"], final=True),
        _unit("d", ["No"], translatable=False),
        _unit("e", [InlineCode("9", CodeKind.STANDALONE, "<x/>")]),
        _unit("f", ["Plain"]),
    ], source_lang="en")
    summary = pseudo_document(doc)
    assert (summary.units, summary.translated, summary.skipped_protected, summary.skipped_empty,
            summary.flagged) == (6, 2, 3, 1, 0)
    assert doc.target_lang == PSEUDO_LOCALE
    a = doc.units[0]
    assert a.edit.origin == "pseudo" and a.edit.status == "needs-review"
    assert a.target.codes == [g1, g1c] and a.target.text.startswith("[Çļíçķ Šáṽé")
    assert all(u.edit is None for u in doc.units[1:5])
    assert "pseudo-translated" in summary.line()


def test_pseudo_document_flagged_units_are_counted_not_written(monkeypatch):
    from tower_cat import pseudo

    g1, g1c = InlineCode("1", CodeKind.OPEN, "<g id='1'>"), InlineCode("1", CodeKind.CLOSE, "</g>")
    doc = Document(Path("x.xlf"), "xliff12", [_unit("a", ["Click ", g1, "Save", g1c, " now"]), _unit("b", ["ok"])])
    # a transformation that loses the pair in the middle of the text cannot be repaired safely
    monkeypatch.setattr(pseudo, "pseudo_markup", lambda markup, *a: codes.strip_tags(markup))
    summary = pseudo.pseudo_document(doc)
    assert summary.flagged == 1 and summary.translated == 1
    assert doc.units[0].edit is None and doc.units[0].target is None
    assert summary.problems["a"]


def test_pseudo_document_target_lang():
    doc = Document(Path("x.po"), "po", [_unit("a", ["x"])], target_lang="de")
    pseudo_document(doc)
    assert doc.target_lang == "de"
    pseudo_document(doc, target_lang="fr-FR")
    assert doc.target_lang == "fr-FR"


# ------------------------------------------------------------------------------------------------ pseudo CLI

def test_pseudo_xliff12_end_to_end(tmp_path, capsys):
    fmt = xliff12()
    text = XLIFF12.replace(' target-language="fr-FR"', "")
    src = write(tmp_path, "app.xlf", text)
    out = tmp_path / "out" / "app.qps.xlf"
    code, stdout, stderr = run(capsys, "pseudo", src, "-o", out, "--target-lang", "qps-ploc")
    assert code == 0, stderr
    assert "5 of 7 units" in stdout
    assert src.read_text(encoding="utf-8") == text  # input untouched
    etree.fromstring(out.read_bytes())  # well-formed
    doc = fmt.load(out)
    assert doc.target_lang == "qps-ploc"  # a file without a target language gets the one asked for
    assert assert_codes_carried(doc) == 5
    by_id = {u.id: u for u in doc.units}
    assert by_id["save"].target.text.startswith("[Çļíçķ ")
    assert "<1>" in by_id["count"].target.text and "&" in by_id["count"].target.text
    assert not by_id["locked"].has_target
    assert by_id["done"].target.text == "Annuler"
    assert "[" not in by_id["done"].target.text


def test_pseudo_xliff2_end_to_end(tmp_path, capsys):
    fmt = xliff2()
    src = write(tmp_path, "app.xlf", XLIFF2)
    out = tmp_path / "app.qps.xlf"
    code, stdout, stderr = run(capsys, "pseudo", src, "-o", out, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["translated"] == 2 and summary["skipped_protected"] == 1 and summary["flagged"] == 0
    assert summary["target_lang"] == PSEUDO_LOCALE  # the file had no trgLang
    etree.fromstring(out.read_bytes())
    doc = fmt.load(out)
    assert doc.target_lang == PSEUDO_LOCALE
    assert assert_codes_carried(doc) == 2


def test_pseudo_po_end_to_end(tmp_path, capsys):
    fmt = po()
    src = write(tmp_path, "de.po", PO)
    out = tmp_path / "de.qps.po"
    code, stdout, stderr = run(capsys, "pseudo", src, "-o", out, "--expansion", "0.5")
    assert code == 0, stderr
    doc = fmt.load(out)
    assert assert_codes_carried(doc) >= 4
    text = out.read_text(encoding="utf-8")
    assert "%s" in text and "{name}" in text and "%d" in text
    assert "[Ûþļöáðíñĝ %s…" in text
    assert "<1>" in text  # literal tag-like text survives as text
    assert doc.target_lang == "de"


def test_pseudo_refuses_to_overwrite_input(tmp_path, capsys):
    xliff12()
    src = write(tmp_path, "app.xlf", XLIFF12)
    code, _, stderr = run(capsys, "pseudo", src, "-o", src)
    assert code == 2 and "error:" in stderr and "--in-place" in stderr
    code, _, stderr = run(capsys, "pseudo", src)
    assert code == 2 and "-o" in stderr
    assert src.read_text(encoding="utf-8") == XLIFF12
    code, _, stderr = run(capsys, "pseudo", src, "--in-place")
    assert code == 0, stderr
    assert "needs-review-translation" in src.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.xlf"]  # no temporary files left


@pytest.mark.parametrize("content", [MALFORMED, XXE, LAUGHS], ids=["malformed", "xxe", "billion-laughs"])
def test_pseudo_hostile_or_broken_input_writes_nothing(tmp_path, capsys, content):
    xliff12()
    src = write(tmp_path, "in.xlf", content)
    out = tmp_path / "out.xlf"
    code, stdout, stderr = run(capsys, "pseudo", src, "-o", out)
    assert code == 2
    assert stderr.startswith("error: ") and "Traceback" not in stderr
    assert "root:" not in stdout + stderr  # nothing of /etc/passwd
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xlf"]


# ------------------------------------------------------------------------------------------------ inspect

def test_inspect_json(tmp_path, capsys):
    xliff12()
    src = write(tmp_path, "app.xlf", XLIFF12)
    code, stdout, stderr = run(capsys, "inspect", src, "--json")
    assert code == 0, stderr
    info = json.loads(stdout)
    assert info["format"] == "xliff12"
    assert (info["source_lang"], info["target_lang"]) == ("en-US", "fr-FR")
    assert info["units"] == 7
    assert info["untranslatable"] == 1 and info["final"] == 1 and info["locked"] == 0
    assert info["with_target"] == 1 and info["without_target"] == 6
    assert info["inline_codes"] == 10
    assert info["words"] == sum([5, 4, 5, 4, 2, 1, 2])
    assert info["states"] == {"(none)": 6, "final": 1}
    assert info["issues"] == {"errors": 0, "warnings": 0}


def test_inspect_table(tmp_path, capsys):
    po()
    src = write(tmp_path, "de.po", PO)
    code, stdout, stderr = run(capsys, "inspect", src)
    assert code == 0, stderr
    assert "po" in stdout and "units" in stdout and "words" in stdout


def test_inspect_broken_file_is_an_error(tmp_path, capsys):
    xliff12()
    code, _, stderr = run(capsys, "inspect", write(tmp_path, "bad.xlf", MALFORMED))
    assert code == 2 and stderr.startswith("error: ")


# ------------------------------------------------------------------------------------------------ validate

def test_validate_ok_and_errors(tmp_path, capsys):
    xliff12()
    po()
    good = write(tmp_path, "app.xlf", XLIFF12)
    code, stdout, _ = run(capsys, "validate", good, write(tmp_path, "de.po", PO))
    assert code == 0 and stdout.count(": ok") == 2
    bad_po = write(tmp_path, "bad.po", 'msgid "Hello\nmsgstr "Hallo"\n')
    code, stdout, _ = run(capsys, "validate", good, bad_po)
    assert code == 1
    assert "bad.po:1: error" in stdout


@pytest.mark.parametrize("content, words", [(MALFORMED, "well-formed"), (XXE, "DOCTYPE"), (LAUGHS, "DOCTYPE")],
                         ids=["malformed", "xxe", "billion-laughs"])
def test_validate_hostile_files(tmp_path, capsys, content, words):
    xliff12()
    src = write(tmp_path, "in.xlf", content)
    code, stdout, stderr = run(capsys, "validate", src)
    assert code == 1
    assert words in stdout and "error" in stdout
    code, stdout, _ = run(capsys, "validate", "--json", src)
    assert code == 1
    report = json.loads(stdout)
    assert report["ok"] is False and report["errors"][0]["line"]


def test_validate_json_many_files_and_code_warnings(tmp_path, capsys):
    xliff12()
    mismatch = XLIFF12.replace('<trans-unit id="plain"><source>Hello world</source></trans-unit>',
                               '<trans-unit id="plain"><source>Hello <x id="1"/> world</source>'
                               '<target>Bonjour monde</target></trans-unit>')
    code, stdout, _ = run(capsys, "validate", "--json", write(tmp_path, "a.xlf", XLIFF12),
                          write(tmp_path, "b.xlf", mismatch), tmp_path / "missing.xlf")
    assert code == 1
    a, b, missing = json.loads(stdout)
    assert a["ok"] and b["ok"] and not missing["ok"]
    assert any(w["unit"] == "plain" and "missing code" in w["message"] for w in b["warnings"])


def test_validate_exit_codes_through_the_real_entry_point(tmp_path):
    xliff12()
    bad = write(tmp_path, "in.xlf", XXE)
    good = write(tmp_path, "ok.xlf", XLIFF12)
    cmd = [sys.executable, "-m", "tower_cat.cli"]
    assert subprocess.run(cmd + ["validate", str(good)], capture_output=True).returncode == 0
    proc = subprocess.run(cmd + ["validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and "DOCTYPE" in proc.stdout
    proc = subprocess.run(cmd + ["pseudo", str(bad), "-o", str(tmp_path / "o.xlf")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "o.xlf").exists()


# ------------------------------------------------------------------------------------------------ our samples

SAMPLE_FILES = ["tower-notes.en-de.xlf", "tower-notes.en-pt.xliff", "tower-notes.de.po", "tower-notes.tmx"]


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_pseudo_samples_keep_every_code(samples, tmp_path, capsys, name):
    from tower_cat import formats

    src = samples / name
    if not src.exists():
        pytest.skip(f"samples/{name} is absent")
    fmt_name = formats.detect(src)
    pytest.importorskip(formats.FORMAT_MODULES[fmt_name], reason=f"{fmt_name} module not written yet")
    out = tmp_path / name
    code, stdout, stderr = run(capsys, "pseudo", src, "-o", out, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["flagged"] == 0 and summary["translated"] > 0
    doc = formats.load(out)
    assert assert_codes_carried(doc) == summary["translated"]
    code, stdout, _ = run(capsys, "validate", out)
    assert code == 0, stdout
