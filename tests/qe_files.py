"""Small bilingual files in every format tower-cat writes QE into (used by tests/test_qe.py, test_report.py)."""

from __future__ import annotations

from pathlib import Path

# (id, source, target): the target of "u4" is deliberately wrong, "u5" is empty (not scored).
PAIRS = [
    ("u1", "The printer is out of paper.", "Der Drucker hat kein Papier mehr."),
    ("u2", "Click Save to keep your changes.", "Klicken Sie auf Speichern, um Ihre Änderungen zu behalten."),
    ("u3", "Your session has expired.", "Ihre Sitzung ist abgelaufen."),
    ("u4", "Open the settings menu.", "Le chat dort sur le canapé."),
    ("u5", "Select a language.", ""),
]


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xliff12() -> str:
    units = "".join(
        f'<trans-unit id="{i}"><source>{_esc(s)}</source>'
        + (f'<target state="translated">{_esc(t)}</target>' if t else "") + "</trans-unit>\n"
        for i, s, t in PAIRS)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">\n'
            '<file original="app.json" source-language="en" target-language="de" datatype="plaintext"><body>\n'
            + units + "</body></file></xliff>\n")


def sdlxliff() -> str:
    units = "".join(
        f'<trans-unit id="{i}"><source>{_esc(s)}</source>'
        f'<seg-source><mrk mtype="seg" mid="{n}">{_esc(s)}</mrk></seg-source>'
        + (f'<target><mrk mtype="seg" mid="{n}">{_esc(t)}</mrk></target>' if t else "")
        + f'<sdl:seg-defs><sdl:seg id="{n}"' + (' conf="Translated"' if t else "") + "/></sdl:seg-defs></trans-unit>\n"
        for n, (i, s, t) in enumerate(PAIRS, start=1))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<xliff xmlns:sdl="http://sdl.com/FileTypes/SdlXliff/1.0" '
            'xmlns="urn:oasis:names:tc:xliff:document:1.2" version="1.2" sdl:version="1.0">\n'
            '<file original="app.txt" datatype="x-sdlfilterframework2" source-language="en-US" '
            'target-language="de-DE"><header></header><body>\n' + units + "</body></file></xliff>\n")


def mqxliff() -> str:
    units = "".join(
        f'<trans-unit id="{n}" mq:status="{"PartiallyEdited" if t else "NotStarted"}" mq:percent="0">'
        f'<source xml:space="preserve">{_esc(s)}</source><target xml:space="preserve">{_esc(t)}</target>'
        "</trans-unit>\n"
        for n, (i, s, t) in enumerate(PAIRS, start=1))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<xliff xmlns="urn:oasis:names:tc:xliff:document:1.2" '
            'xmlns:mq="MQXliff" version="1.2">\n<file original="app.txt" source-language="eng" '
            'target-language="ger" datatype="x-undefined"><body>\n' + units + "</body></file></xliff>\n")


def xliff2() -> str:
    units = "".join(
        f'<unit id="{i}"><segment id="s{i}"' + (' state="translated"' if t else "") + f'><source>{_esc(s)}</source>'
        + (f"<target>{_esc(t)}</target>" if t else "") + "</segment></unit>\n"
        for i, s, t in PAIRS)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xliff xmlns="urn:oasis:names:tc:xliff:document:2.0" '
            'version="2.0" srcLang="en" trgLang="de">\n<file id="f1">\n' + units + "</file></xliff>\n")


def po() -> str:
    head = ('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: de\\n"\n'
            '"X-Source-Language: en\\n"\n\n')
    body = "".join(f'#: app.c:{n}\nmsgid "{s}"\nmsgstr "{t}"\n\n' for n, (i, s, t) in enumerate(PAIRS, start=1))
    return head + body


FORMATS = {"xliff12": (xliff12, ".xlf"), "sdlxliff": (sdlxliff, ".sdlxliff"), "mqxliff": (mqxliff, ".mqxliff"),
           "xliff2": (xliff2, ".xlf"), "po": (po, ".po")}


def write(fmt: str, folder: Path) -> Path:
    make, ext = FORMATS[fmt]
    path = Path(folder) / f"app-{fmt}{ext}"
    path.write_text(make(), encoding="utf-8")
    return path
