"""qa.py: the checks a finished target goes through before it is written."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SAMPLES
from tower_cat import qa
from tower_cat.document import CodeKind, Document, InlineCode, Segment, Unit


def _checks(src, tgt, **kw) -> dict[str, str]:
    source = src if isinstance(src, Segment) else Segment.from_text(src)
    target = tgt if isinstance(tgt, Segment) else Segment.from_text(tgt)
    return {i.check: i.severity for i in qa.check_unit(source, target, **kw)}


def test_clean_translation_has_no_issues():
    assert _checks("Delete 3 notes?", "3 Notizen löschen?") == {}


def test_numbers_ignore_separators_but_not_values():
    assert qa.numbers("2.5 GB and 1,000 files") == qa.numbers("2,5 GB und 1.000 Dateien")
    assert _checks("The file is 2.5 GB.", "Die Datei ist 2,5 GB groß.") == {}
    assert _checks("Keep 60 days.", "30 Tage behalten.") == {"numbers": "error"}
    assert "missing 60" in qa.check_unit(Segment.from_text("60 days"), Segment.from_text("Tage"))[0].message


def test_placeholders():
    assert qa.placeholders("Hello %s, you have {count} new %1$d {{x}} ${y} 100%%") == \
        {"%s": 1, "{count}": 1, "%1$d": 1, "{{x}}": 1, "${y}": 1}
    assert _checks("Hello {name}", "Hallo {name}") == {}
    assert _checks("Hello {name}", "Hallo {Name}") == {"placeholders": "error"}
    assert _checks("%s of %s", "%s von") == {"placeholders": "error"}


def test_empty_untranslated_whitespace_length():
    assert _checks("Save", "") == {"empty": "error"}
    assert _checks("Tower Notes", "Tower Notes") == {"untranslated": "warning"}
    assert _checks("PDF 2", "PDF 2") == {"untranslated": "warning"}
    assert _checks("2024", "2024") == {}
    assert _checks("Save ", "Speichern") == {"whitespace": "warning"}
    assert _checks("Move note to trash", "Notiz in den Papierkorb verschieben", max_length=30) == {"length": "error"}
    assert _checks("Move note to trash", "Notiz verschieben", max_length=30) == {}
    assert _checks("a", "abcdef", max_length=3, size_unit="pixel") == {}  # pixels are not measured


def test_codes():
    b = InlineCode("1", CodeKind.OPEN, "<b>")
    eb = InlineCode("1", CodeKind.CLOSE, "</b>")
    x = InlineCode("2", CodeKind.STANDALONE, "<x/>")
    src = Segment(["Click ", b, "Save", eb, x])
    assert _checks(src, Segment(["Klicken Sie auf ", b, "Speichern", eb, x])) == {}
    issues = qa.check_unit(src, Segment(["Klicken Sie auf ", b, "Speichern", eb]))
    assert [i.check for i in issues] == ["codes"] and "missing" in issues[0].message


def test_terms_and_charset():
    from tower_cat.terminology import Glossary

    glossary = Glossary.load(SAMPLES / "glossary.de.csv")
    ok = _checks("Move the note to the trash.", "Verschieben Sie die Notiz in den Papierkorb.", glossary=glossary,
                 src_lang="en", tgt_lang="de")
    assert ok == {}
    bad = qa.check_unit(Segment.from_text("Move the note to the trash."),
                        Segment.from_text("Verschieben Sie den Vermerk in den Papierkorb."), glossary=glossary,
                        src_lang="en", tgt_lang="de")
    assert {i.check for i in bad} == {"terms"} and all(i.severity == "error" for i in bad)
    doc = Document(Path("x.po"), "po", [], charset="latin-1")
    assert _checks("Euro", "€ Euro", doc=doc) == {"charset": "error"}


def test_check_document_stores_issues():
    u1 = Unit("1", Segment.from_text("3 files"), Segment.from_text("4 Dateien"))
    u2 = Unit("2", Segment.from_text("Files"), Segment.from_text("Dateien"))
    u3 = Unit("3", Segment.from_text("Nothing"))
    doc = Document(Path("x.xlf"), "xliff12", [u1, u2, u3], "en", "de")
    found = qa.check_document(doc)
    assert list(found) == ["1"] and u1.qa_issues and not u2.qa_issues and not u3.qa_issues
    assert qa.has_errors(u1.qa_issues)
    assert [i.check for i in qa.check(u3)] == ["empty"]
    assert str(u1.qa_issues[0]).startswith("error: numbers")
