"""`tower-cat analyze`: CAT-style word counts per match band on our samples and third-party SDLXLIFF/MQXLIFF."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tower_cat import formats
from tower_cat.analysis import AnalysisError, Bands, analyze_documents, count_words, segment_counts
from tower_cat.cli import cli
from tower_cat.tm import TranslationMemory

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent")


@pytest.mark.parametrize("text, words", [
    ("I like apples and oranges.", 5),                      # Trados Studio's own example
    ("Revenue increased by 1.2 million.", 5),              # a number is one word, decimal point inside
    ("up-to-date", 1), ("don't", 1), ("e-mail", 1),        # hyphen / apostrophe join
    ("he/she", 2),                                          # slash separates
    ("8%", 1), ("— •", 0), ("...", 0),                      # symbols alone are not words
    ("1,000 users at 10:30", 4),
    ("結論、分断した図が", 8),                                 # one per ideograph / kana
    ("Wedge bolt XF1C00iP.", 3),                            # alphanumeric string = 1
    ("", 0), ("   ", 0),
])
def test_count_words_follows_cat_conventions(text, words):
    assert count_words(text) == words


def test_codes_are_not_words_and_split_text():
    doc = formats.load(SAMPLES / "tower-notes.en-de.xlf")
    with_codes = [u for u in doc.units if u.source.codes]
    assert with_codes
    for unit in with_codes:
        words, chars, tags = segment_counts(unit.source)
        assert tags == len(unit.source.codes)
        assert words == sum(count_words(p) for p in unit.source.parts if isinstance(p, str))
        assert chars == sum(1 for p in unit.source.parts if isinstance(p, str) for ch in p if not ch.isspace())


def _tm_from(tmp_path: Path, *paths: Path, src: str | None = None) -> TranslationMemory:
    tm = TranslationMemory(tmp_path / "tm.sqlite")
    for p in paths:
        tm.import_file(p, src_lang=src)
    return tm


def test_bands_on_samples_are_the_tm_scores(tmp_path):
    doc = formats.load(SAMPLES / "tower-notes.en-de.xlf")
    tm = _tm_from(tmp_path, SAMPLES / "tower-notes.tmx")
    result = analyze_documents([doc], tm=tm)
    fa = result.files[0]
    cats = fa.categories
    assert fa.total.segments == len(doc.units)
    assert fa.total.words == sum(segment_counts(u.source)[0] for u in doc.units)
    assert cats["locked"].segments == sum(1 for u in doc.units if u.protected)
    # every unit checked independently against the TM: its best score decides its band unless it repeats
    seen, expect = set(), {c: 0 for c in cats}
    for u in doc.units:
        if u.protected:
            expect["locked"] += 1
            continue
        key = " ".join(u.source.text.split())
        m = tm.lookup(u, doc.source_lang, doc.target_lang, limit=1, min_score=50)
        score = m[0].score if m else None
        if score is not None and score > 100:
            expect["context"] += 1
        elif (key, tuple((c.kind.value, c.tag) for c in u.source.codes)) in seen:
            expect["repetition"] += 1
        elif score is None:
            expect["new"] += 1
        else:
            expect["100" if score >= 100 else "95-99" if score >= 95 else "85-94" if score >= 85
                   else "75-84" if score >= 75 else "50-74"] += 1
        seen.add((key, tuple((c.kind.value, c.tag) for c in u.source.codes)))
    assert {c: v.segments for c, v in cats.items()} == expect
    assert cats["100"].segments > 0 and cats["new"].segments > 0 and cats["repetition"].segments > 0
    # weighted words = sum(weight * words)
    assert fa.weighted_words == pytest.approx(sum(result.bands.weight(c) * v.words for c, v in cats.items()))


def test_repetitions_count_across_files_in_order(tmp_path):
    doc1 = formats.load(SAMPLES / "tower-notes.en-de.xlf")
    doc2 = formats.load(SAMPLES / "tower-notes.en-de.xlf")
    result = analyze_documents([doc1, doc2])
    first, second = result.files
    # no TM: the second copy is all repetitions (except units it locks)
    assert second.categories["repetition"].segments == sum(1 for u in doc2.units if not u.protected
                                                           and not u.source.is_empty())
    assert second.categories["new"].segments == 0
    assert result.total.total.words == first.total.words + second.total.words


@needs_corpus
@pytest.mark.parametrize("rel", ["sdlxliff/disfr/Configuring_Spelling_Checker.doc.sdlxliff",
                                 "sdlxliff/rws/#1 - quickplace.docx.sdlxliff",
                                 "mqxliff/disfr/ChangeTracking_memoQ_1.mqxliff"])
def test_translated_segments_of_a_third_party_file_are_100_percent_against_its_own_tm(tmp_path, rel):
    path = CORPUS / rel
    doc = formats.load(path)
    tm = _tm_from(tmp_path, path, src=doc.source_lang)
    result = analyze_documents([doc], tm=tm)
    cats = result.files[0].categories
    translated = [u for u in doc.units if u.has_target and not u.protected]
    assert translated
    matched = cats["100"].segments + cats["context"].segments + cats["repetition"].segments
    assert matched >= len(translated)
    assert sum(c.segments for c in cats.values()) == len(doc.units)


def test_custom_bands_and_weights():
    bands = Bands.parse("90,70", "repetition=0,90-99=0.25,new=2")
    assert bands.categories == ["context", "repetition", "100", "90-99", "70-89", "new", "locked"]
    assert bands.category(95) == "90-99" and bands.category(71) == "70-89" and bands.category(60) == "new"
    assert bands.weight("90-99") == 0.25 and bands.weight("new") == 2.0
    with pytest.raises(AnalysisError, match="no category '95-99'"):
        Bands.parse("90,70", "95-99=0.3")
    with pytest.raises(AnalysisError, match="between 1 and 99"):
        Bands.parse("100,50")
    with pytest.raises(AnalysisError, match="comma-separated"):
        Bands.parse("high,low")


def test_cli_table_json_csv_html(tmp_path):
    runner = CliRunner()
    db = tmp_path / "tm.sqlite"
    r = runner.invoke(cli, ["tm", "import", str(SAMPLES / "tower-notes.tmx"), "--db", str(db), "--no-progress"])
    assert r.exit_code == 0, r.output
    files = [str(SAMPLES / "tower-notes.en-de.xlf"), str(SAMPLES / "tower-notes.de.po")]
    r = runner.invoke(cli, ["analyze", *files, "--tm", str(db)])
    assert r.exit_code != 0 and "names no source language" in str(r.exception)  # the PO says only "de"
    files_langs = [*files, "--source-lang", "en"]
    r = runner.invoke(cli, ["analyze", *files_langs, "--tm", str(db)])
    assert r.exit_code == 0, r.output
    assert "repetition" in r.output and "weighted words" in r.output and "total" in r.output
    r = runner.invoke(cli, ["analyze", *files_langs, "--tm", str(db), "--json"])
    data = json.loads(r.output)
    assert [f["file"] for f in data["files"]] == files
    assert data["total"]["total"]["words"] == sum(f["total"]["words"] for f in data["files"])
    r = runner.invoke(cli, ["analyze", files[0], "--tm", str(db), "--csv", "-"])
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert {row["category"] for row in rows} >= {"100", "new", "total"}
    html = tmp_path / "analysis.html"
    r = runner.invoke(cli, ["analyze", files[0], "--tm", str(db), "--html", str(html)])
    assert r.exit_code == 0 and "<table>" in html.read_text()
    r = runner.invoke(cli, ["analyze", files[0], "--bands", "x"])
    assert r.exit_code != 0
    r = runner.invoke(cli, ["analyze", files[0], "--html", files[0]])
    assert r.exit_code != 0 and "same file as FILE" in str(r.exception)
    assert formats.load(files[0]).units  # the input is untouched
