"""Fuzzing every reader with hypothesis: random mutations of real files (byte flips, truncations, deletions,
insertions of markup fragments, duplicated elements) must give either a clean load whose no-op save is
byte-identical (and whose pseudo-translation saves and loads again), or a ``TowerCatError`` naming the file (and
the line, for a file that is recognised but broken): never another exception type, never a hang.

Mutations also change attribute values (ids, states, flags, languages), which keeps most files well-formed and
so reaches the readers' validation and the writers. Seeds: the project's samples/, a few small inline files for the formats samples/ lacks, and, when ../shared is
beside the checkout, the small files of the corpus. A case that runs longer than ``CASE_SECONDS`` fails as a hang
(SIGALRM), without any wall-clock assertion on normal cases.

CI runs a modest number of cases per reader (the whole file takes well under a minute). A long offline run:

    TOWER_CAT_FUZZ_EXAMPLES=3000 TOWER_CAT_FUZZ_REPORT=fuzz.json \\
        .venv/bin/python -m pytest -q -p no:cacheprovider -s tests/test_fuzz_readers.py

``TOWER_CAT_FUZZ_EXAMPLES`` is the number of cases per reader (default 60); with it set, the run is random
instead of derandomized; ``TOWER_CAT_FUZZ_REPORT`` writes the outcome counts per reader as JSON.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tower_cat import formats
from tower_cat.errors import TowerCatError, UnsupportedFormatError
from tower_cat.formats import tmx

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"
EXAMPLES = int(os.environ.get("TOWER_CAT_FUZZ_EXAMPLES", "60"))
LONG_RUN = "TOWER_CAT_FUZZ_EXAMPLES" in os.environ
CASE_SECONDS = 30
SEED_MAX_BYTES = 40_000

SDLXLIFF = """<?xml version="1.0" encoding="utf-8"?>
<xliff xmlns:sdl="http://sdl.com/FileTypes/SdlXliff/1.0" xmlns="urn:oasis:names:tc:xliff:document:1.2" version="1.2" sdl:version="1.0">
<file original="a.docx" datatype="x-sdlfilterframework2" source-language="en-US" target-language="de-DE">
<body>
<group><sdl:cxts><sdl:cxt id="1"/></sdl:cxts>
<trans-unit id="u1"><source><g id="1">Open the <x id="2"/>file</g> now. Then close it.</source><seg-source><g id="1"><mrk mtype="seg" mid="1">Open the <x id="2"/>file</mrk></g><mrk mtype="seg" mid="2"> now.</mrk> <mrk mtype="seg" mid="3">Then close it.</mrk></seg-source><target><g id="1"><mrk mtype="seg" mid="1">Öffnen Sie die <x id="2"/>Datei</mrk></g><mrk mtype="seg" mid="2"/> <mrk mtype="seg" mid="3"/></target><sdl:seg-defs><sdl:seg id="1" conf="Translated" origin="tm" percent="100"/><sdl:seg id="2" locked="true"/><sdl:seg id="3"/></sdl:seg-defs></trans-unit>
</group>
<trans-unit id="u2" translate="no"><source>Logo</source></trans-unit>
</body>
</file>
</xliff>
"""

MQXLIFF = """<?xml version="1.0" encoding="utf-8"?>
<xliff xmlns="urn:oasis:names:tc:xliff:document:1.2" xmlns:mq="MQXliff" version="1.2">
  <file original="a.html" source-language="en-US" target-language="de-DE" datatype="html">
    <body>
      <trans-unit id="1" mq:status="ManuallyConfirmed" mq:percent="100">
        <source xml:space="preserve">Press <bpt id="1" ctype="bold">&lt;b&gt;</bpt>Save<ept id="1">&lt;/b&gt;</ept>.</source>
        <target xml:space="preserve">Drücken Sie <bpt id="1" ctype="bold">&lt;b&gt;</bpt>Speichern<ept id="1">&lt;/b&gt;</ept>.</target>
      </trans-unit>
      <trans-unit id="2" mq:status="NotStarted" mq:locked="locked" mq:maxlengthchars="20">
        <source xml:space="preserve">Cancel <ph id="2">{0}</ph></source>
      </trans-unit>
      <trans-unit id="3" mq:status="NotStarted"><source xml:space="preserve">Line one
line two</source></trans-unit>
    </body>
  </file>
</xliff>
"""

XLIFF2 = """<?xml version="1.0" encoding="UTF-8"?>
<xliff xmlns="urn:oasis:names:tc:xliff:document:2.0" version="2.0" srcLang="en" trgLang="de">
  <file id="f1">
    <notes><note>File note</note></notes>
    <unit id="u1" name="greeting">
      <segment id="s1" state="translated">
        <source>Hello <pc id="1" dataRefStart="d1">world</pc><ph id="2" dataRef="d2"/>!</source>
        <target>Hallo <pc id="1" dataRefStart="d1">Welt</pc><ph id="2" dataRef="d2"/>!</target>
      </segment>
      <ignorable><source> </source></ignorable>
      <segment id="s2"><source>Bye.</source></segment>
      <originalData><data id="d1">&lt;b&gt;</data><data id="d2">&lt;br/&gt;</data></originalData>
    </unit>
    <group id="g1"><unit id="u2" translate="no"><segment><source>Logo</source></segment></unit></group>
  </file>
</xliff>
"""

INLINE_SEEDS = {"sdlxliff": ("inline.sdlxliff", SDLXLIFF), "mqxliff": ("inline.mqxliff", MQXLIFF),
                "xliff2": ("inline.xlf", XLIFF2)}

# markup fragments the mutations insert: half elements, codes, entity and character references (legal, illegal,
# undeclared), CDATA, comments, a DOCTYPE with an entity, PO keywords, escapes and line ends
FRAGMENTS = [
    "<", ">", "</", "/>", "&", "&amp;", "&lt;", "&#0;", "&#x1F;", "&#65;", "&#xD800;", "&undeclared;", '"', "'",
    "<g id=\"1\">", "</g>", "<x id=\"1\"/>", "<bx id=\"9\"/>", "<ex id=\"9\"/>", "<ph id=\"1\">{0}</ph>",
    "<bpt i=\"1\">&lt;b&gt;</bpt>", "<ept i=\"1\">&lt;/b&gt;</ept>", "<mrk mtype=\"seg\" mid=\"1\">", "</mrk>",
    "<mrk mtype=\"seg\" mid=\"99\">x</mrk>", "<pc id=\"1\">", "</pc>", "<sc id=\"9\"/>", "<ec startRef=\"9\"/>",
    "<hi>", "</hi>", "<it pos=\"begin\">x</it>", "<sub>s</sub>", "<![CDATA[c]]>", "<!-- c -->", "<?pi x?>",
    "<!DOCTYPE x [<!ENTITY e \"boom\">]>", "<tu>", "</tu>", "<tuv xml:lang=\"fr\"><seg>s</seg></tuv>", "<seg>",
    "<trans-unit id=\"n\"><source>s</source></trans-unit>", "<unit id=\"n\"><segment><source>s</source></segment></unit>",
    "<termEntry><langSet xml:lang=\"en\"><tig><term>t</term></tig></langSet></termEntry>",
    "msgid \"", "msgstr \"", "msgstr[1] \"x\"\n", "msgid_plural \"p\"\n", "msgctxt \"c\"\n", "#, fuzzy\n", "#~ ",
    "\\", "\\x00", "\\777", "\\u1234", "\"\n\"", "\n", "\r", "\r\n", "\x00", "\t", "\ufeff", "\xff", "é", "𝔘",
    "nplurals=3; plural=n%3;", "charset=ISO-8859-1", "charset=UTF-7", ",", ";", "\"\"", "en,de\n",
]
FRAGMENT_BYTES = [f.encode("utf-8") if f != "\xff" else b"\xff" for f in FRAGMENTS]
# attribute values that keep the file well-formed but mean something else (ids that collide or vanish, states,
# translate/locked flags, languages, numbers out of range)
ATTRIBUTE_VALUES = [b"", b"1", b"2", b"x", b"no", b"yes", b"final", b"seg", b"translated", b"-1", b"0",
                    b"99999999999999999999", b"&amp;", b"&lt;", b"en", b"de-DE", b"*all*", b"begin", b"end",
                    b"true", b"locked", b"Draft", b"ApprovedSignOff", b"2.0", b"1.2", b"preserve", b"#s1"]
_ELEMENT = re.compile(rb"<([A-Za-z][\w:.-]*)[^<>]*>[^<]*</\1>")
_ATTRIBUTE = re.compile(rb"""\s[\w:.-]+\s*=\s*(?:"([^"<]*)"|'([^'<]*)')""")


def _small(paths) -> list[Path]:
    return sorted(p for p in paths if p.is_file() and p.stat().st_size <= SEED_MAX_BYTES)


def _seeds(reader: str, tmp: Path) -> list[Path]:
    corpus = {"xliff12": ["xliff12"], "sdlxliff": ["sdlxliff"], "mqxliff": ["mqxliff"], "xliff2": ["xliff2"],
              "tmx": ["tmx"], "iter_tmx": ["tmx"], "po": ["po"], "tbx": ["tbx"], "csv": []}[reader]
    own = {"xliff12": ["tower-notes.en-de.xlf", "tower-notes.en-pt.xliff"], "tmx": ["tower-notes.tmx"],
           "iter_tmx": ["tower-notes.tmx"], "po": ["tower-notes.de.po"], "tbx": ["glossary.tbx"],
           "csv": ["glossary.de.csv", "glossary.pt.tsv"]}.get(reader, [])
    seeds = [SAMPLES / name for name in own if (SAMPLES / name).is_file() and
             (SAMPLES / name).stat().st_size <= 4 * SEED_MAX_BYTES]
    if reader in INLINE_SEEDS:
        name, text = INLINE_SEEDS[reader]
        p = tmp / name
        p.write_text(text, encoding="utf-8")
        seeds.append(p)
    for folder in corpus:
        if (CORPUS / folder).is_dir():
            seeds += [p for p in _small((CORPUS / folder).rglob("*")) if _reads(reader, p)]
    return seeds


def _reads(reader: str, path: Path) -> bool:
    """Whether the seed is a valid file of this reader (only valid files are mutated)."""
    try:
        _load(reader, path)
    except TowerCatError:
        return False
    return True


def _load(reader: str, path: Path):
    if reader == "iter_tmx":
        return list(tmx.iter_tmx(path))
    if reader in ("tbx", "csv"):
        from tower_cat.terminology import Glossary

        return Glossary.load(path)
    return formats.module(reader).load(path)


@st.composite
def mutations(draw, size: int):
    """A list of (kind, position, extra) edits, applied in order."""
    n = draw(st.integers(1, 4))
    out = []
    for _ in range(n):
        kind = draw(st.sampled_from(["flip", "truncate", "delete", "insert", "insert", "duplicate", "swap",
                                     "attribute", "attribute"]))
        pos = draw(st.integers(0, max(size - 1, 0)))
        if kind == "flip":
            extra = draw(st.integers(1, 255))
        elif kind == "insert":
            extra = draw(st.sampled_from(FRAGMENT_BYTES))
        elif kind == "attribute":
            extra = draw(st.sampled_from(ATTRIBUTE_VALUES))
        elif kind == "delete":
            extra = draw(st.integers(1, 64))
        else:
            extra = draw(st.integers(0, 1_000_000))
        out.append((kind, pos, extra))
    return out


def mutate(data: bytes, edits) -> bytes:
    for kind, pos, extra in edits:
        if not data:
            data = b"<"
        pos %= len(data)
        if kind == "flip":
            data = data[:pos] + bytes([data[pos] ^ extra]) + data[pos + 1:]
        elif kind == "truncate":
            data = data[:pos]
        elif kind == "delete":
            data = data[:pos] + data[pos + extra:]
        elif kind == "insert":
            data = data[:pos] + extra + data[pos:]
        elif kind == "attribute":  # the value of the first attribute at or after pos
            m = _ATTRIBUTE.search(data, pos) or _ATTRIBUTE.search(data)
            if m:
                g = 1 if m.group(1) is not None else 2
                data = data[:m.start(g)] + extra + data[m.end(g):]
        else:  # duplicate or swap an element with text content (a whole <tu>, <seg>, <note>, ...)
            found = list(_ELEMENT.finditer(data))
            if not found:
                continue
            m = found[extra % len(found)]
            if kind == "duplicate":
                data = data[:m.end()] + m.group(0) + data[m.end():]
            else:
                other = found[(extra // 7) % len(found)]
                if other.start() >= m.end():
                    data = data[:m.start()] + other.group(0) + data[m.end():other.start()] + m.group(0) + \
                        data[other.end():]
    return data


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"a case ran past {CASE_SECONDS} s")


OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def _check_error(reader: str, exc: TowerCatError, path: Path) -> None:
    assert str(path) in str(exc), f"{reader}: error without the file name: {exc!r}"
    # a file recognised as the format but broken names the line; "not a format tower-cat reads" cannot
    if not isinstance(exc, UnsupportedFormatError):
        assert exc.line is not None or exc.unit is not None or _lineless_ok(exc), \
            f"{reader}: error without line or unit: {exc!r}"


def _lineless_ok(exc: TowerCatError) -> bool:
    """Errors about the file as a whole: a line would add nothing."""
    return bool(re.search(r"no <file>|no <body>|root element|not a TBX file|not UTF-8 text|no such file|"
                          r"more than \d+ |empty|no units|not well-formed XML: Document is empty|"
                          r"no glossary|no header row", exc.message))


def _run_case(reader: str, seed: Path, edits, tmp: Path) -> str:
    data = mutate(seed.read_bytes(), edits)
    path = tmp / ("case-" + seed.name)
    path.write_bytes(data)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        try:
            loaded = _load(reader, path)
        except TowerCatError as exc:
            _check_error(reader, exc, path)
            return "clean error"
        if reader in ("iter_tmx", "tbx", "csv"):
            return "clean load"
        out = tmp / ("out-" + seed.name)
        loaded.save(out)
        assert out.read_bytes() == data, f"{reader}: a no-op save changed the file"
        # the write path over whatever the mutation produced: pseudo, save, load again
        from tower_cat.pseudo import pseudo_document

        try:
            pseudo_document(loaded)
            loaded.save(out)
        except TowerCatError as exc:
            _check_error(reader, exc, path if str(path) in str(exc) else out)
            return "clean load"
        formats.module(reader).load(out)
        return "clean load"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


READERS = ["xliff12", "sdlxliff", "mqxliff", "xliff2", "tmx", "iter_tmx", "po", "tbx", "csv"]


@pytest.mark.parametrize("reader", READERS)
def test_mutated_files_load_cleanly_or_fail_cleanly(reader: str, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"fuzz-{reader}")
    seeds = _seeds(reader, tmp)
    assert seeds, f"no seed file for {reader}"

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG_RUN, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.data())
    def case(data):
        seed = data.draw(st.sampled_from(seeds), label="seed")
        edits = data.draw(mutations(seed.stat().st_size), label="edits")
        try:
            outcome = _run_case(reader, seed, edits, tmp)
        except BaseException:
            OUTCOMES[reader]["other"] += 1
            raise
        OUTCOMES[reader][outcome] += 1

    case()
    counts = dict(OUTCOMES[reader])
    print(f"\nfuzz {reader}: {len(seeds)} seeds, {sum(counts.values())} cases: {counts}")
    report = os.environ.get("TOWER_CAT_FUZZ_REPORT")
    if report:
        all_counts = json.loads(Path(report).read_text()) if Path(report).is_file() else {}
        all_counts[reader] = {"seeds": len(seeds), **counts}
        Path(report).write_text(json.dumps(all_counts, indent=2))
    assert counts.get("other", 0) == 0
