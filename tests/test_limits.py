"""Bounded resources: what input decides the size of is capped (plural forms, units, nesting depth, attribute and
text sizes), and encodings that could hide markup (UTF-7, EBCDIC) are refused, by every reader and every command.

The caps are module constants (``po.MAX_NPLURALS``, ``_xml.MAX_*``); tests that would need gigabytes at the real
value lower the constant and check the mechanism, the others use the real value. No wall-clock assertions: the
commands run in a subprocess with a generous timeout (a run that allocated without bound would hit it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tower_cat import formats
from tower_cat.errors import FormatError
from tower_cat.formats import _xml, po, tmx, xliff12

ROOT = Path(__file__).resolve().parents[1]
TOWER_CAT = [sys.executable, "-m", "tower_cat.cli"]

# the denial-of-service file: 182 bytes, one plural message, a header asking for 100 million forms
PLURAL_BOMB = ('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
               '"Plural-Forms: nplurals=100000000; plural=n;\\n"\n\n'
               'msgid "One file only"\nmsgid_plural "%d files"\nmsgstr[0] "Eine Datei!"\n')


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NO_COLOR="1", COLUMNS="200")
    return subprocess.run(TOWER_CAT + args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.fixture
def plural_bomb(tmp_path: Path) -> Path:
    p = tmp_path / "bomb.po"
    p.write_text(PLURAL_BOMB, encoding="utf-8")
    assert p.stat().st_size == 182
    return p


# --- PO plural forms --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["validate", "inspect", "pseudo", "tm import"])
def test_plural_bomb_is_refused_by_every_command(plural_bomb: Path, tmp_path: Path, command: str):
    args = {"validate": ["validate", str(plural_bomb)],
            "inspect": ["inspect", str(plural_bomb)],
            "pseudo": ["pseudo", str(plural_bomb), "-o", str(tmp_path / "out.po")],
            "tm import": ["tm", "import", str(plural_bomb), "--db", str(tmp_path / "tm.sqlite"),
                          "--source", "en", "--target", "de"]}[command]
    res = _run(args)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Plural-Forms" in out and "nplurals=100000000" in out and f"{plural_bomb}:4" in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "out.po").exists()


def test_plural_bomb_is_refused_by_translate(plural_bomb: Path, tmp_path: Path, tiny_llama):
    res = _run(["translate", str(plural_bomb), "-o", str(tmp_path / "out.po"), "--model", str(tiny_llama.ct2_path),
                "--no-cache", "--target", "de"], timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "Plural-Forms" in out and "nplurals=100000000" in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "out.po").exists()


def _po_with_nplurals(tmp_path: Path, n: str) -> Path:
    p = tmp_path / f"n{n[:10]}.po"
    p.write_text(f'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Plural-Forms: nplurals={n}; '
                 f'plural=0;\\n"\n\nmsgid "a"\nmsgid_plural "as"\nmsgstr[0] "b"\n', encoding="utf-8")
    return p


def test_nplurals_up_to_the_limit_load(tmp_path: Path):
    doc = po.load(_po_with_nplurals(tmp_path, str(po.MAX_NPLURALS)))
    assert len(doc.units) == po.MAX_NPLURALS  # one unit per plural form
    assert len(po.load(_po_with_nplurals(tmp_path, "6")).units) == 6  # Arabic


@pytest.mark.parametrize("n", [str(po.MAX_NPLURALS + 1), "0", "9" * 5000])
def test_nplurals_past_the_limit_name_the_header(tmp_path: Path, n: str):
    p = _po_with_nplurals(tmp_path, n)
    for strict in (True, False):
        with pytest.raises(FormatError) as exc:
            po.load(p, strict=strict)
        assert exc.value.line == 4 and "Plural-Forms" in str(exc.value) and str(p) in str(exc.value)


# --- units per file ---------------------------------------------------------------------------------------------

def _xliff(units: int, depth: int = 0, attr: int = 0, text: int = 0) -> str:
    inner = "<g id='1'>" * depth + "x" * max(text, 1) + "</g>" * depth
    attrs = f' resname="{"r" * attr}"' if attr else ""
    tus = "".join(f'<trans-unit id="u{i}"{attrs}><source>{inner}</source></trans-unit>\n' for i in range(units))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:'
            '1.2"><file original="f" source-language="en" target-language="de" datatype="plaintext"><body>\n'
            f'{tus}</body></file></xliff>\n')


def _tmx(units: int) -> str:
    tus = "".join(f'<tu><tuv xml:lang="en"><seg>a{i}</seg></tuv><tuv xml:lang="de"><seg>b{i}</seg></tuv></tu>\n'
                  for i in range(units))
    return f'<?xml version="1.0"?>\n<tmx version="1.4"><header srclang="en"/><body>\n{tus}</body></tmx>\n'


def _po(units: int) -> str:
    return "".join(f'msgid "a{i}"\nmsgstr "b{i}"\n\n' for i in range(units))


@pytest.mark.parametrize("kind", ["xliff12", "tmx", "iter_tmx", "po"])
def test_units_per_file_are_bounded(tmp_path: Path, monkeypatch, kind: str):
    monkeypatch.setattr(_xml, "MAX_UNITS", 3)
    monkeypatch.setattr(po, "MAX_UNITS", 3)
    make = {"xliff12": _xliff, "tmx": _tmx, "iter_tmx": _tmx, "po": _po}[kind]
    ext = {"xliff12": "xlf", "po": "po"}.get(kind, "tmx")
    ok, big = tmp_path / f"ok.{ext}", tmp_path / f"big.{ext}"
    ok.write_text(make(3), encoding="utf-8")
    big.write_text(make(4), encoding="utf-8")
    if kind == "iter_tmx":
        assert len(list(tmx.iter_tmx(ok))) == 3
        with pytest.raises(FormatError, match="more than 3"):
            list(tmx.iter_tmx(big))
        return
    assert len(formats.load(ok).units) == 3
    with pytest.raises(FormatError, match="more than 3") as exc:
        formats.load(big)
    assert str(big) in str(exc.value)


# --- XML nesting depth, attribute and text sizes ---------------------------------------------------------------

def test_nesting_depth_at_the_real_limit(tmp_path: Path):
    p = tmp_path / "deep.xlf"
    # xliff/file/body/trans-unit/source = 5 levels before the first <g>
    p.write_text(_xliff(1, depth=_xml.MAX_DEPTH - 5), encoding="utf-8")
    unit = xliff12.load(p).units[0]
    assert len(unit.source.codes) == 2 * (_xml.MAX_DEPTH - 5)
    p.write_text(_xliff(1, depth=_xml.MAX_DEPTH - 4), encoding="utf-8")
    with pytest.raises(FormatError, match=f"nested more than {_xml.MAX_DEPTH} deep") as exc:
        xliff12.load(p)
    assert exc.value.line == 3


def test_nesting_depth_in_the_streaming_tmx_reader(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(_xml, "MAX_DEPTH", 10)
    p = tmp_path / "deep.tmx"
    seg = "<hi>" * 12 + "x" + "</hi>" * 12
    p.write_text(f'<?xml version="1.0"?>\n<tmx version="1.4"><header srclang="en"/><body>\n<tu><tuv xml:lang="en">'
                 f'<seg>{seg}</seg></tuv></tu>\n</body></tmx>\n', encoding="utf-8")
    with pytest.raises(FormatError, match="nested more than 10 deep"):
        list(tmx.iter_tmx(p))
    with pytest.raises(FormatError, match="nested more than 10 deep"):
        tmx.load(p)


def test_attribute_size_is_bounded(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(_xml, "MAX_ATTRIBUTE_CHARS", 100)
    p = tmp_path / "a.xlf"
    p.write_text(_xliff(2, attr=100), encoding="utf-8")
    assert len(xliff12.load(p).units) == 2
    p.write_text(_xliff(2, attr=101), encoding="utf-8")
    with pytest.raises(FormatError, match="attribute 'resname' has a value of 101 characters") as exc:
        xliff12.load(p)
    assert exc.value.line == 3


@pytest.mark.parametrize("kind", ["xliff12", "iter_tmx"])
def test_text_size_is_bounded(tmp_path: Path, monkeypatch, kind: str):
    monkeypatch.setattr(_xml, "MAX_TEXT_CHARS", 1000)
    p = tmp_path / "t.xml"
    if kind == "xliff12":
        p.write_text(_xliff(1, text=999), encoding="utf-8")
        assert len(xliff12.load(p).units[0].source.text) == 999
        p.write_text(_xliff(1, text=1200), encoding="utf-8")
        with pytest.raises(FormatError, match="longer than tower-cat reads"):
            xliff12.load(p)
    else:
        p.write_text(_tmx(1).replace("a0", "a" * 999), encoding="utf-8")
        assert len(list(tmx.iter_tmx(p))) == 1
        p.write_text(_tmx(1).replace("a0", "a" * 1200), encoding="utf-8")
        with pytest.raises(FormatError, match="longer than tower-cat reads"):
            list(tmx.iter_tmx(p))


def test_the_real_limits_leave_room_for_real_files():
    assert _xml.MAX_DEPTH >= 100 and _xml.MAX_UNITS >= 2_000_000 and _xml.MAX_TEXT_CHARS >= 10_000_000
    assert _xml.MAX_ATTRIBUTE_CHARS >= 100_000 and 6 <= po.MAX_NPLURALS <= 100


# --- encodings that are not ASCII-compatible --------------------------------------------------------------------

XLIFF_UTF7 = _xliff(1).replace('encoding="UTF-8"', 'encoding="UTF-7"')


@pytest.mark.parametrize("encoding", ["UTF-7", "unicode-1-1-utf-7", "cp500", "cp037"])
def test_xml_in_encodings_that_hide_markup_is_refused(tmp_path: Path, encoding: str):
    text = _xliff(1).replace('encoding="UTF-8"', f'encoding="{encoding}"')
    body = text.encode(encoding if not encoding.startswith("unicode") else "utf-7")
    # UTF-7 writes the XML declaration in ASCII; an EBCDIC file would not even show "<?xml": give it one
    data = body if encoding.lower().startswith(("utf", "unicode")) else \
        text.split("\n", 1)[0].encode("ascii") + b"\n" + text.split("\n", 1)[1].encode(encoding)
    p = tmp_path / "x.xlf"
    p.write_bytes(data)
    with pytest.raises(FormatError, match="not ASCII-compatible") as exc:
        xliff12.load(p)
    assert str(p) in str(exc.value) and exc.value.line == 1


def test_utf7_tmx_and_tbx_are_refused(tmp_path: Path):
    from tower_cat.terminology import load_tbx

    t = tmp_path / "x.tmx"
    t.write_bytes(_tmx(1).replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-7"?>').encode("utf-7"))
    for read in (tmx.load, lambda p: list(tmx.iter_tmx(p))):
        with pytest.raises(FormatError, match="not ASCII-compatible"):
            read(t)
    b = tmp_path / "x.tbx"
    b.write_bytes(b'<?xml version="1.0" encoding="UTF-7"?>\n<martif type="TBX"><text><body/></text></martif>')
    with pytest.raises(FormatError, match="not ASCII-compatible"):
        load_tbx(b)


def test_utf16_xml_is_still_read(tmp_path: Path):
    p = tmp_path / "x.xlf"
    p.write_bytes(_xliff(2).replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"))
    assert [u.id for u in xliff12.load(p).units] == ["u0", "u1"]


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-le", "utf-32-be"])
def test_utf32_xml_is_read_and_written_back(tmp_path: Path, encoding: str):
    from tower_cat.document import Segment

    p = tmp_path / "x.xlf"
    p.write_bytes(_xliff(2).replace('encoding="UTF-8"', 'encoding="UTF-32"').encode(encoding))
    doc = formats.load(p)
    assert doc.format == "xliff12" and [u.id for u in doc.units] == ["u0", "u1"]
    doc.save(tmp_path / "same.xlf")
    assert (tmp_path / "same.xlf").read_bytes() == p.read_bytes()
    doc.units[0].set_target(Segment.from_text("Äpfel"))
    doc.save(tmp_path / "out.xlf")
    assert formats.load(tmp_path / "out.xlf").units[0].target.text == "Äpfel"
    t = tmp_path / "x.tmx"
    t.write_bytes(_tmx(2).replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-32"?>').encode(encoding))
    assert [u.target.text for u in tmx.load(t).units] == ["b0", "b1"]
    assert [u.get("de").text for u in tmx.iter_tmx(t)] == ["b0", "b1"]


def test_utf7_po_is_refused(tmp_path: Path):
    p = tmp_path / "x.po"
    p.write_bytes(b'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-7\\n"\n\nmsgid "a"\nmsgstr "+ADw-b+AD4-"\n')
    with pytest.raises(FormatError, match="not ASCII-compatible") as exc:
        po.load(p)
    assert exc.value.line == 3


def test_validate_reports_a_utf7_file_as_an_error(tmp_path: Path):
    p = tmp_path / "x.xlf"
    p.write_bytes(XLIFF_UTF7.encode("utf-7"))
    res = _run(["validate", "--json", str(p)])
    assert res.returncode == 1
    result = json.loads(res.stdout)
    assert not result["ok"] and "not ASCII-compatible" in result["errors"][0]["message"]


def test_preflight_refuses_from_the_head_alone(plural_bomb: Path, tmp_path: Path):
    """What a job can check before it loads a model (the first bytes only)."""
    with pytest.raises(FormatError, match="nplurals=100000000") as exc:
        formats.preflight(plural_bomb)
    assert exc.value.line == 4
    utf7 = tmp_path / "x.xlf"
    utf7.write_bytes(XLIFF_UTF7.encode("utf-7"))
    with pytest.raises(FormatError, match="not ASCII-compatible"):
        formats.preflight(utf7)
    good = tmp_path / "ok.po"
    good.write_text(PLURAL_BOMB.replace("100000000", "2"), encoding="utf-8")
    assert formats.preflight(good) == "po"
    assert formats.preflight(ROOT / "samples" / "tower-notes.en-de.xlf") == "xliff12"


# --- linear time in what the input decides (found by fuzzing-style review) ---------------------------------------

def _hang_guard(seconds: int):
    """Fail as a hang past ``seconds`` (generous: the quadratic versions took 20-50x longer than the limit here,
    the linear ones a few seconds on a loaded 2-core machine). Not a speed assertion."""
    import signal

    def alarm(signum, frame):
        raise AssertionError(f"still running after {seconds} s: quadratic in the input?")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)


def test_po_string_of_many_lines_loads_in_linear_time(tmp_path: Path):
    """A msgid continued over 300 000 lines: joined once (+= per line was quadratic: ~90 s for 200 000 lines)."""
    import signal

    p = tmp_path / "long.po"
    p.write_text('msgid ""\n' + '"abcdefghij"\n' * 300_000 + 'msgstr "x"\n', encoding="utf-8")
    _hang_guard(60)
    try:
        doc = po.load(p)
    finally:
        signal.alarm(0)
    assert doc.units[0].source.text == "abcdefghij" * 300_000


def test_tmx_with_a_language_per_tu_loads_in_linear_time(tmp_path: Path):
    """20 000 tus, each with a language of its own: the list of target languages is checked through a set
    (a list scan per tuv took ~100 s)."""
    import signal

    tus = "".join(f'<tu><tuv xml:lang="en"><seg>a</seg></tuv><tuv xml:lang="x-l{i}"><seg>b</seg></tuv></tu>\n'
                  for i in range(20_000))
    p = tmp_path / "langs.tmx"
    p.write_text(f'<?xml version="1.0"?>\n<tmx version="1.4"><header srclang="en"/><body>\n{tus}</body></tmx>\n',
                 encoding="utf-8")
    _hang_guard(60)
    try:
        doc = tmx.load(p)
    finally:
        signal.alarm(0)
    assert doc.target_lang == "x-l0" and len(doc.units) == 20_000


def test_segments_times_notes_and_alt_trans_do_not_multiply(tmp_path: Path):
    """A 270 KB XLIFF with 3 000 segments, 3 000 notes and 3 000 alt-trans in one trans-unit: every segment
    used to get its own copy of every note and alt-trans (161 s, 1.8 GB). Now the notes are shared and at most
    MAX_ALT_TRANS alt-trans are kept per unit."""
    import signal

    n = 3000
    segs = "".join(f'<mrk mtype="seg" mid="{i}">x</mrk>' for i in range(n))
    alts = '<alt-trans mid="7"><target>own</target></alt-trans>' + "<alt-trans><target>y</target></alt-trans>" * n
    notes = "<note>n</note>" * n
    p = tmp_path / "amp.xlf"
    p.write_text('<?xml version="1.0"?><xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2"><file '
                 'original="f" source-language="en" datatype="plaintext"><body><trans-unit id="t"><source>x</source>'
                 f'<seg-source>{segs}</seg-source>{notes}{alts}</trans-unit></body></file></xliff>', encoding="utf-8")
    _hang_guard(60)
    try:
        doc = xliff12.load(p)
    finally:
        signal.alarm(0)
    assert len(doc.units) == n
    assert doc.units[1].notes is doc.units[2].notes and len(doc.units[1].notes) == n
    assert len(doc.units[1].meta["alt_trans"]) == xliff12.MAX_ALT_TRANS
    own = doc.units[7].meta["alt_trans"]
    assert own[0]["target"] == "own" and len(own) == xliff12.MAX_ALT_TRANS
