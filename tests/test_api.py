"""The README's "Python API" section, run as written: every ```python snippet of it, in a fresh namespace, in a
temporary folder, with the tiny test model in place of ``models/tower`` and the repository's samples/ (the only
substitutions; the section says so). Also: what ``tower_cat`` exports, and that it ships ``py.typed``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _section_snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Python API\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, 'README.md has no "## Python API" section'
    return re.findall(r"```python\n(.*?)```", match.group(1), re.S)


SNIPPETS = _section_snippets()


def test_the_section_shows_the_four_shortest_uses_in_three_lines_each():
    joined = "\n".join(SNIPPETS)
    for use in ("translate_text(", "translate_file(", "post_edit_file(", "score_file("):
        assert use in joined, f"the README's Python API section does not show {use}"
    for snippet in SNIPPETS:
        lines = [ln for ln in snippet.strip().splitlines() if ln.strip()]
        assert len(lines) <= 3, snippet


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tiny_llama, tmp_path, monkeypatch, capsys):
    code = SNIPPETS[index].replace('"models/tower"', repr(str(tiny_llama.ct2_path)))
    code = code.replace('"samples/', '"' + str(ROOT / "samples") + "/")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOWER_CAT_CACHE", str(tmp_path / "cache.sqlite"))  # the library's default cache, here
    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(code, f"README.md Python API snippet {index + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.strip(), "every snippet prints what it got"
    if "translate_file(" in code:
        from tower_cat import formats

        doc = formats.load(tmp_path / "tower-notes.de.xlf")
        assert sum(1 for u in doc.units if u.has_target) > 3  # TM hits and machine translations written
    if "post_edit_file(" in code:
        assert (tmp_path / "post-edited.de.po").is_file()
    if "score_file(" in code:
        scores = [line.rsplit(" ", 1)[1] for line in printed.strip().splitlines()]
        assert scores and all(s == "None" or 0 <= float(s) <= 100 for s in scores)
    assert (tmp_path / "cache.sqlite").exists(), "the generation cache default lives in the library"


def test_public_names_and_protocols(tiny_llama):
    import tower_cat
    from tower_cat import protocols
    from tower_cat.engine import Engine
    from tower_cat.terminology import Glossary
    from tower_cat.tm import TranslationMemory

    assert (Path(tower_cat.__file__).parent / "py.typed").is_file()
    for name in tower_cat.__all__:
        assert hasattr(tower_cat, name), name
    engine = Engine.load(tiny_llama.ct2_path, device="cpu", compute_type="float32", threads=1)
    with TranslationMemory(":memory:") as tm:
        assert isinstance(engine, protocols.TranslationEngine)
        assert isinstance(tm, protocols.TranslationMemoryLike)
        assert isinstance(Glossary.load(ROOT / "samples" / "glossary.de.csv"), protocols.GlossaryLike)
        assert not isinstance(object(), protocols.TranslationMemoryLike)
    engine.close()


def test_errors_form_one_family():
    import tower_cat
    from tower_cat import errors
    from tower_cat.adapters.catalog import LanguageError
    from tower_cat.adapters.service import ServiceError
    from tower_cat.sessions import SessionError

    for cls in (errors.TMError, errors.GlossaryError, errors.SessionError, errors.OutputError, errors.DataError,
                errors.TrainError, errors.ServiceError, errors.LanguageError, errors.SegmentTooLong,
                errors.InvalidArgument, ServiceError, SessionError, LanguageError):
        assert issubclass(cls, tower_cat.TowerCatError), cls
    assert ServiceError is errors.ServiceError and SessionError is errors.SessionError
    assert issubclass(errors.InvalidArgument, ValueError)  # code that caught the old ValueError still does
