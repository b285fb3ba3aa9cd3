"""Glossaries: TBX v2/v3 and CSV/TSV loading, term matching with inflection, DNT, forbidden variants, compliance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tower_cat.errors import UnsafeXMLError
from tower_cat.terminology import DEPRECATED, SUPERSEDED, Glossary, GlossaryError, english_forms, fold

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"


def _sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"samples/{name} is not there yet")
    return path


@pytest.fixture(scope="module")
def tbx() -> Glossary:
    return Glossary.load(_sample("glossary.tbx"))


# ----------------------------------------------------------------------------------------------------- loading

def test_load_sample_tbx(tbx):
    assert len(tbx) == 28 and tbx.languages == ["de-DE", "en-US", "pt-PT"]
    product = next(c for c in tbx if c.dnt)
    assert product.terms["en-US"][0].text == "Tower Notes" and product.terms["en-US"][0].case_sensitive
    note = next(c for c in tbx if c.terms["en-US"][0].text == "note")
    de = {t.text: t.status for t in note.terms["de-DE"]}
    assert de == {"Notiz": "preferred", "Vermerk": DEPRECATED}
    assert note.terms["en-US"][0].part_of_speech == "noun"


def test_load_csv_and_tsv():
    de = Glossary.load(_sample("glossary.de.csv"))
    assert de.tgt_lang == "de" and de.src_lang is None and len(de) == 28
    hits = de.find("Move the note to the trash.", "en", "de-DE")
    assert [h.targets for h in hits][0] == ["Notiz"] and "Vermerk" in hits[0].forbidden
    assert next(c for c in de if c.dnt).terms["x-source"][0].text == "Tower Notes"
    pt = Glossary.load(_sample("glossary.pt.tsv"))
    assert pt.tgt_lang == "pt" and len(pt) == 28
    assert pt.find("Share the notebook", "en", "pt-PT")[1].targets == ["bloco de notas"]


def test_csv_variants(tmp_path):
    headerless = tmp_path / "terms.csv"
    headerless.write_text("invoice,Rechnung\nlog in,anmelden\n", encoding="utf-8")
    g = Glossary.load(headerless)
    assert [h.targets for h in g.find("Log in to see your invoices.", "en", "de")] == [["anmelden"], ["Rechnung"]]
    langs = tmp_path / "langs.tsv"
    langs.write_text("en-US\tfr-FR\tforbidden\nscreen\técran\tmoniteur\n", encoding="utf-8")
    g = Glossary.load(langs)
    assert (g.src_lang, g.tgt_lang) == ("en-US", "fr-FR")
    res = g.check("Lock the screen", "Verrouiller le moniteur", "en", "fr")
    assert [i.kind for i in res.issues] == ["missing", "forbidden"]


def test_load_corpus_tbx(corpus):
    files = sorted((corpus / "tbx").rglob("*.tbx"))
    assert len(files) >= 8
    for path in files:
        g = Glossary.load(path)
        assert len(g) > 0, path
    sdl = Glossary.load(corpus / "tbx" / "okapi" / "sdl_tbx.tbx")
    assert len(sdl) > 200 and set(sdl.languages) == {"de", "en"}
    turkish = Glossary.load(corpus / "tbx" / "okapi" / "test02_win1254.tbx")  # windows-1254 declared
    assert "tr" in turkish.languages


def test_tbx_v3_statuses(corpus):
    for rel in ("ltac/TBX-Min_dialect/DCT/Example_Astronomy_DCT_VALID.tbx", "ltac/TBX_test_files/basic_good.tbx"):
        g = Glossary.load(corpus / "tbx" / rel)
        c1 = next(c for c in g if c.id == "c1")
        statuses = {t.text: t.status for t in c1.terms["en"]}
        # TBX-Min: administrativeStatus supersededTerm-admn-sts; TBX-Basic: usageStatus deprecated
        assert statuses.get("galactic cluster") in (SUPERSEDED, DEPRECATED), rel
        hits = g.find("Two open clusters were observed.", "en", "es")
        assert hits and hits[0].text == "open clusters" and hits[0].targets == ["cúmulo abierto"]
        res = g.check("Two open clusters were observed.", "Se observaron dos cúmulos abiertos.", "en", "es")
        assert res.ok and not res.issues
        # a superseded source term is not looked for
        assert not g.find("A galactic cluster.", "en", "es")
    tbx = Glossary.load(corpus / "tbx" / "ltac" / "TBX-Min_dialect" / "DCT" / "Example_Astronomy_DCT_VALID.tbx")
    carbon = [c for c in tbx if any(t.text == "ciclo del carbono" for t in c.terms.get("es", []))]
    assert carbon and any(t.status == DEPRECATED for t in carbon[0].terms["es"])


def test_invalid_tbx(tmp_path, corpus):
    invalid = sorted((corpus / "invalid" / "tbx").rglob("*.tbx"))
    assert invalid
    for path in invalid:  # structure and TBX-Min dialect violations are refused, naming the line
        with pytest.raises(GlossaryError) as err:
            Glossary.load(path)
        assert err.value.line and path.name in str(err.value)
    for path in sorted((corpus / "tbx").rglob("*.tbx")):  # while every valid corpus TBX loads
        assert len(Glossary.load(path)) > 0, path
    bomb = tmp_path / "bomb.tbx"
    bomb.write_text('<?xml version="1.0"?>\n<!DOCTYPE martif [<!ENTITY a "aaaa">]>\n<martif><text><body>'
                    "<termEntry><langSet xml:lang='en'><tig><term>&a;</term></tig></langSet></termEntry>"
                    "</body></text></martif>", encoding="utf-8")
    with pytest.raises(UnsafeXMLError):
        Glossary.load(bomb)
    broken = tmp_path / "broken.tbx"
    broken.write_text("<martif><text><body><termEntry></body></martif>", encoding="utf-8")
    with pytest.raises(GlossaryError) as err:
        Glossary.load(broken)
    assert err.value.line
    other = tmp_path / "other.tbx"
    other.write_text("<xliff/>", encoding="utf-8")
    with pytest.raises(GlossaryError):
        Glossary.load(other)


# ----------------------------------------------------------------------------------------------------- matching

def test_english_forms():
    assert {"syncs", "synced", "syncing"} <= english_forms("sync")
    assert {"archived", "archiving", "archives"} <= english_forms("archive")
    assert {"copies", "copied"} <= english_forms("copy")
    assert {"tagged", "tagging", "tags"} <= english_forms("tag")
    assert english_forms("comment", noun=True) & {"commented", "commenting"} == set()


def test_term_matching_inflection_and_word_boundaries(tbx):
    words = [h.text for h in tbx.find("Syncing your notebooks and notes is easy; synced notes stay.", "en", "de")]
    assert words == ["Syncing", "notebooks", "notes", "synced", "notes"]
    # never inside another word
    assert tbx.find("Asynchronous footnotes and keynote files", "en", "de")[0].text == "files"
    assert [h.text for h in tbx.find("a note-taking app", "en", "de")] == []
    # the noun "comment" does not match the verb form
    assert all(h.text != "commented" for h in tbx.find("She commented on it.", "en", "de"))


def test_longest_match_wins_and_case(tbx):
    hits = tbx.find("Welcome to Tower Notes!", "en", "de")
    assert [h.text for h in hits] == ["Tower Notes"] and hits[0].dnt
    # the product name is case-sensitive: "tower notes" is two ordinary words
    assert [h.text for h in tbx.find("the tower notes", "en", "de")] == ["notes"]


# ----------------------------------------------------------------------------------------------------- compliance

@pytest.mark.parametrize("source,target,lang,kinds", [
    ("Delete the notebooks?", "Die Notizbücher löschen?", "de-DE", []),  # umlaut plural
    ("Your notes are synced.", "Ihre Notizen wurden synchronisiert.", "de-DE", []),
    ("The file was shared.", "Die Datei wurde geteilt.", "de-DE", []),  # ge- participle
    ("Save the note templates.", "Speichern Sie die Notizvorlagen.", "de-DE", []),  # compound
    ("Move the note to the trash.", "Verschieben Sie den Vermerk in den Mülleimer.", "de-DE",
     ["missing", "forbidden", "missing", "forbidden"]),
    ("Open the notebooks.", "Abra os blocos de notas.", "pt-PT", []),
    ("Archive the file.", "Arquivar o ficheiro.", "pt-PT", []),
    ("Archive the file.", "Arquivar o arquivo.", "pt-PT", ["missing", "forbidden"]),
    ("Share the file with the user.", "Compartilhar o ficheiro com o usuário.", "pt-PT",
     ["missing", "forbidden", "missing", "forbidden"]),
    ("Welcome to Tower Notes", "Bem-vindo ao Torre Notas", "pt-PT", ["dnt"]),
    ("Welcome to Tower Notes", "Bem-vindo ao Tower Notes", "pt-PT", []),
])
def test_check_targets(tbx, source, target, lang, kinds):
    res = tbx.check(source, target, "en-US", lang)
    assert [i.kind for i in res.issues] == kinds, [i.message for i in res.issues]
    assert res.ok == (not kinds)


def test_forbidden_found_even_when_inflected(tbx):
    res = tbx.check("Add a note", "Vermerke hinzufügen", "en", "de")
    assert [i.kind for i in res.issues] == ["missing", "forbidden"] and res.issues[1].found == "Vermerke"


@pytest.mark.parametrize("glossary,lang", [("glossary.tbx", "de-DE"), ("glossary.tbx", "pt-PT"),
                                           ("glossary.de.csv", "de-DE"), ("glossary.pt.tsv", "pt-PT")])
def test_sample_tmx_is_compliant(glossary, lang):
    from tower_cat.formats import tmx

    g = Glossary.load(_sample(glossary))
    doc = tmx.load(_sample("tower-notes.tmx"), target_lang=lang)
    report = g.check_document(doc, "en-US", lang)
    assert report.terms_checked > 300
    assert report.compliance >= 99.0, [i.message for u in report.violations for i in u.issues]


def test_report_detects_injected_violations(tbx):
    from tower_cat.formats import tmx

    doc = tmx.load(_sample("tower-notes.tmx"), target_lang="de-DE")
    spoiled = 0
    for unit in doc.units:
        if unit.target and "Notiz" in unit.target.text and "Notizb" not in unit.target.text:
            unit.target.parts = [p.replace("Notiz", "Vermerk") if isinstance(p, str) else p
                                 for p in unit.target.parts]
            spoiled += 1
    report = tbx.check_document(doc, "en-US", "de-DE")
    assert spoiled > 5 and len(report.violations) >= spoiled - 1
    assert report.compliance < 97
    kinds = {i.kind for u in report.violations for i in u.issues}
    assert "forbidden" in kinds


def test_prompt_terms(tbx):
    assert tbx.prompt_terms("Share this notebook in Tower Notes", "en", "pt-PT") == [
        ("share", "partilhar"), ("notebook", "bloco de notas"), ("Tower Notes", "Tower Notes")]


def test_fold():
    assert fold("Notizbücher") == "notizbucher" and fold("ECRÃ") == "ecra" and fold("Straße") == "strasse"


# ----------------------------------------------------------------------------------------------------- CLI

def test_cli_terms_check(tmp_path):
    from tower_cat.cli import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["terms", "check", str(_sample("tower-notes.tmx")), "--glossary",
                              str(_sample("glossary.tbx")), "--target", "pt-PT", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["compliance"] >= 99 and data["terms_checked"] > 300
    bad = tmp_path / "bad.po"
    bad.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: de\\n"\n\n'
                   'msgid "Delete the note"\nmsgstr "Den Vermerk löschen"\n\n'
                   'msgid "Welcome to Tower Notes"\nmsgstr "Willkommen bei Turm Notizen"\n', encoding="utf-8")
    res = runner.invoke(cli, ["terms", "check", str(bad), "-g", str(_sample("glossary.tbx")), "--source", "en"])
    assert res.exit_code == 0, res.output
    assert "compliance: 0.0%" in " ".join(res.output.split())
    res = runner.invoke(cli, ["terms", "check", str(bad), "-g", str(_sample("glossary.tbx")), "--source", "en",
                              "--json"])
    kinds = [i["kind"] for u in json.loads(res.output)["units"] for i in u["issues"]]
    assert kinds == ["missing", "forbidden", "dnt"]
    res = runner.invoke(cli, ["terms", "check", str(bad), "-g", str(_sample("glossary.tbx")), "--source", "en",
                              "--fail-under", "90"])
    assert res.exit_code == 1
