"""The QE report: self-contained HTML with SVG histograms, worst segments with error spans, QA issues and data
exports; rendered in a real headless browser (Debian chromium) when one is installed (`make browser`)."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tower_cat.document import CodeKind, Document, InlineCode, Segment, Unit
from tower_cat.qe import QEResult, QESpan, score_units
from tower_cat.report import highlight, histogram, histogram_svg, report_data, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class SpanBackend:
    """Deterministic scores and spans (no model): score = 10 x the unit's number, a span on every weak one."""

    def score(self, items):
        out = []
        for item in items:
            n = int(item.id.lstrip("u"))
            spans = [QESpan(0, min(3, len(item.target)), "major" if n % 2 else "minor", item.target[:3])] if n < 5 else []
            out.append(QEResult(float(min(100, n * 10 + 3)), spans))
        return out

    def describe(self):
        return "test:spans"


def _doc(name: str, n: int, start: int = 0) -> Document:
    units = []
    for i in range(start, start + n):
        target = Segment(["Ziel ", InlineCode("1", CodeKind.OPEN, '<g id="1">', tag="g"), f"Nummer {i}",
                          InlineCode("1", CodeKind.CLOSE, "</g>", tag="g")])
        source = Segment(["Target ", InlineCode("1", CodeKind.OPEN, '<g id="1">', tag="g"), f"number {i}",
                          InlineCode("1", CodeKind.CLOSE, "</g>", tag="g")])
        units.append(Unit(f"u{i}", source, target))
    units.append(Unit("evil", Segment.from_text("<b>bold</b>"), Segment.from_text("<script>alert(1)</script> & co")))
    units[1].qa_issues.append("error: number 1 missing in target")
    units.append(Unit("locked", Segment.from_text("Locked"), Segment.from_text("Gesperrt"), locked=True))
    doc = Document(Path(f"/tmp/{name}"), "xliff12", units, "en", "de")
    score_units(doc.units[:-2], SpanBackend())
    doc.units[-2].set_qe(1.0)  # the hostile one is the worst
    doc.units[-2].meta["qe"] = {"backend": "t", "score": 1.0, "error_spans": [[0, 8, "critical", "<script>"]]}
    return doc


@pytest.fixture()
def docs():
    return [_doc("a.xlf", 6), _doc("b.xlf", 4, start=6)]


def test_histogram_and_svg():
    assert histogram([0, 9.9, 10, 55, 100, 100]) == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    svg = histogram_svg([5, 15, 95], threshold=50, title="x & y")
    assert svg.startswith("<svg") and svg.count('class="bar"') == 10 and 'class="threshold"' in svg
    assert "x &amp; y" in svg


def test_highlight_pieces():
    pieces = highlight("abcdef", [(1, 3, "major"), (2, 5, "minor")], [(0, "<1>"), (6, "</1>")])
    assert pieces == [("<1>", None, True), ("a", None, False), ("bc", "major", False), ("de", "minor", False),
                      ("f", None, False), ("</1>", None, True)]


def test_report_data_and_html(docs, tmp_path):
    data = report_data(docs, threshold=50, backend="test:spans", worst=5)
    assert data["total"]["stats"]["n"] == 12 and data["total"]["files"] == 2
    assert data["worst"][0]["unit"] == "evil" and len(data["worst"]) == 5
    assert [w["score"] for w in data["worst"]] == sorted(w["score"] for w in data["worst"])
    assert data["total"]["below"] == 2 + 5 + 0  # two 'evil' + u0..u4 (3, 13, 23, 33, 43)
    assert data["total"]["issues"] == 2

    path = write_report(tmp_path / "r.html", docs, threshold=50, backend="test:spans", worst=5)
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html and "alert(1)&lt;/script&gt; &amp; co" in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external assets"
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="histogram"') == 3
    assert html.count('<tr class="segment') == 5
    assert '<mark class="sev-critical"' in html and '<span class="code">' in html
    assert "number 1 missing in target" in html
    m = re.search(r'id="download-csv" href="data:text/csv;charset=utf-8;base64,([^"]+)"', html)
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(m.group(1)).decode("utf-8"))))
    assert len(rows) == 2 * 2 + 10 and {"file", "unit", "score", "error_spans"} <= set(rows[0])
    m = re.search(r'id="download-json" href="data:application/json;charset=utf-8;base64,([^"]+)"', html)
    assert json.loads(base64.b64decode(m.group(1)))["total"]["stats"]["n"] == 12

    assert json.loads(write_report(tmp_path / "r.json", docs).read_text())["total"]["files"] == 2
    assert write_report(tmp_path / "r.csv", docs).read_text().startswith("file,unit,score")


def test_empty_report(tmp_path):
    doc = Document(Path("/tmp/empty.xlf"), "xliff12", [Unit("1", Segment.from_text("a"))])
    html = write_report(tmp_path / "e.html", [doc]).read_text()
    assert "No scored segments" in html and 'class="histogram"' in html


# ---------------------------------------------------------------------------------------------------------
# Headless browser


def _png_pixels(data: bytes):
    """Decode an 8-bit RGB/RGBA PNG (what chromium writes) into rows of pixel tuples, with zlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", chunk)
        elif ctype == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = ihdr
    assert depth == 8 and color in (2, 6) and interlace == 0, ihdr
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def _chromium(args, tmp_path):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make browser`)")
def test_report_renders_in_headless_chromium(docs, tmp_path):
    path = write_report(tmp_path / "report.html", docs, threshold=50, backend="test:spans", worst=8)
    url = path.resolve().as_uri()

    dom = _chromium(["--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert html.count('class="histogram"') == 3 and html.count('class="bar"') == 30
    table = re.search(r'<table class="segments" id="worst-segments">(.*?)</table>', html, re.S).group(1)
    assert len(re.findall(r'<tr class="segment', table)) == 8
    assert "alert(1)" in table and "<script" not in html  # shown as text, never run

    shot = tmp_path / "shot.png"
    run = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", url], tmp_path)
    assert run.returncode == 0 and shot.is_file() and shot.stat().st_size > 5000, run.stderr[-2000:]
    width, height, bpp, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 2000)
    colours = {row[i:i + 3] for row in rows[::20] for i in range(0, len(row), bpp * 16)}
    assert len(colours) > 5, "the screenshot is (nearly) one colour"
    # the histogram's bar blue and the below-threshold red are on the page
    def near(c, ref):
        return all(abs(x - y) < 12 for x, y in zip(c, ref))

    every = {row[i:i + 3] for row in rows[::4] for i in range(0, len(row), bpp * 2)}
    assert any(near(c, (0x4A, 0x7B, 0xD0)) for c in every), "no histogram bar pixels"
    assert any(near(c, (0xD9, 0x53, 0x4F)) for c in every), "no below-threshold bar pixels"
