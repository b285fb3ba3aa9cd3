"""Every command that writes refuses an output that is one of its own inputs or databases (tower_cat/outputs.py):
by path, through a symlink, and through a hard link (same inode). The refused file is left byte for byte as it
was, and the command exits non-zero with a one-line reason naming both flags.

The checks run before any model is loaded, so commands that need a model get an empty folder for --model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tower_cat.cli import main
from tower_cat.errors import OutputError
from tower_cat.outputs import refuse_overlaps, same_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


class Result:
    def __init__(self, exit_code: int, output: str):
        self.exit_code, self.output = exit_code, output


@pytest.fixture(autouse=True)
def _capture(capsys):
    global _capsys
    _capsys = capsys
    yield


def run(*args: str) -> Result:
    """``tower-cat ARGS`` in-process through the real entry point (errors become one line and exit 2)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = _capsys.readouterr()
    return Result(code, out + err)


@pytest.fixture
def tm_db(tmp_path) -> Path:
    db = tmp_path / "t.sqlite"
    r = run("tm", "import", SAMPLES / "tower-notes.tmx", "--db", db, "--no-progress")
    assert r.exit_code == 0, r.output
    return db


@pytest.fixture
def xlf(tmp_path) -> Path:
    path = tmp_path / "in.xlf"
    shutil.copy(SAMPLES / "tower-notes.en-de.xlf", path)
    return path


def _refused(result, *names: str) -> None:
    assert result.exit_code != 0, result.output
    assert "refusing to" in result.output, result.output
    assert len([line for line in result.output.splitlines() if "refusing" in line]) == 1  # one line, no traceback
    assert "Traceback" not in result.output
    for name in names:
        assert name in result.output, (name, result.output)


def _link(kind: str, target: Path, where: Path) -> Path:
    if kind == "hardlink":
        os.link(target, where)
    elif kind == "symlink":
        where.symlink_to(target)
    else:
        return target
    return where


def test_same_file_by_path_symlink_and_inode(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    (tmp_path / "sub").mkdir()
    os.link(a, tmp_path / "hard")
    (tmp_path / "soft").symlink_to(a)
    assert same_file(a, tmp_path / "sub" / ".." / "a")
    assert same_file(a, tmp_path / "hard") and same_file(a, tmp_path / "soft")
    assert not same_file(a, tmp_path / "missing") and not same_file(tmp_path / "m1", tmp_path / "m2")
    with pytest.raises(OutputError, match="--db"):
        refuse_overlaps({"-o": tmp_path / "hard"}, {"--db": a})
    refuse_overlaps({"-o": tmp_path / "b", "--cache": None}, {"--db": "postgresql://h/db", "x": ":memory:"})
    with pytest.raises(OutputError, match="--cache"):  # two written files may not be one either
        refuse_overlaps({"-o": a, "--cache": tmp_path / "soft"})


@pytest.mark.parametrize("kind", ["path", "symlink", "hardlink"])
def test_tm_export_over_its_own_database_is_refused(tm_db, tmp_path, kind):
    before = tm_db.read_bytes()
    out = _link(kind, tm_db, tmp_path / "export.tmx")
    _refused(run("tm", "export", "--db", tm_db, "-o", out, "--source", "en", "--target", "de"), "-o", "--db")
    assert tm_db.read_bytes() == before
    assert run("tm", "stats", "--db", tm_db).exit_code == 0


def test_tm_import_into_one_of_its_files_is_refused(tmp_path):
    tmx = tmp_path / "m.tmx"
    shutil.copy(SAMPLES / "tower-notes.tmx", tmx)
    before = tmx.read_bytes()
    _refused(run("tm", "import", tmx, "--db", tmx, "--no-progress"), "--db", "FILE")
    assert tmx.read_bytes() == before


@pytest.mark.parametrize("task", ["translate", "post-edit"])
def test_translate_and_post_edit_refuse_outputs_over_inputs_and_databases(task, xlf, tm_db, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    xlf_before, db_before = xlf.read_bytes(), tm_db.read_bytes()
    hard = _link("hardlink", xlf, tmp_path / "hard.xlf")
    _refused(run(task, xlf, "-o", hard, "--model", model, "--no-cache"), "-o", "FILE")
    glossary = tmp_path / "g.csv"
    shutil.copy(SAMPLES / "glossary.de.csv", glossary)
    _refused(run(task, xlf, "-o", glossary, "--model", model, "--glossary", glossary, "--no-cache"), "-o",
             "--glossary")
    assert glossary.read_bytes() == (SAMPLES / "glossary.de.csv").read_bytes()
    _refused(run(task, xlf, "-o", tmp_path / "out.xlf", "--model", model, "--cache", xlf), "--cache", "FILE")
    if task == "translate":
        _refused(run(task, xlf, "-o", tm_db, "--model", model, "--tm", tm_db, "--no-cache"), "-o", "--tm")
        _refused(run(task, xlf, "-o", tmp_path / "out.xlf", "--model", model, "--tm", tm_db, "--cache", tm_db),
                 "--cache", "--tm")
        _refused(run(task, xlf, "--in-place", "--model", model, "--tm", xlf, "--no-cache"), "--in-place", "--tm")
    assert xlf.read_bytes() == xlf_before and tm_db.read_bytes() == db_before
    assert not (tmp_path / "out.xlf").exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_pseudo_refuses_a_link_to_its_input(xlf, tmp_path, kind):
    before = xlf.read_bytes()
    _refused(run("pseudo", xlf, "-o", _link(kind, xlf, tmp_path / "out.xlf")), "-o")
    assert xlf.read_bytes() == before


def test_qe_refuses_a_report_over_an_input(xlf, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    before = xlf.read_bytes()
    _refused(run("qe", xlf, "--model", model, "-o", tmp_path / "scored.xlf", "--report", xlf), "--report", "FILE")
    assert xlf.read_bytes() == before


def test_analyze_refuses_reports_over_its_tm_or_inputs(xlf, tm_db, tmp_path):
    db_before, xlf_before = tm_db.read_bytes(), xlf.read_bytes()
    _refused(run("analyze", xlf, "--tm", tm_db, "--html", tm_db), "--html", "--tm")
    _refused(run("analyze", xlf, "--csv", _link("hardlink", xlf, tmp_path / "a.csv")), "--csv", "FILE")
    assert tm_db.read_bytes() == db_before and xlf.read_bytes() == xlf_before


def test_refine_refuses_sessions_in_its_tm(tm_db, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    before = tm_db.read_bytes()
    _refused(run("refine", "Hello", "--model", model, "--source", "en", "--target", "de", "--tm", tm_db,
                 "--sessions", tm_db), "--sessions", "--tm")
    assert tm_db.read_bytes() == before


def test_convert_refuses_to_write_over_or_around_its_source(tmp_path):
    src = tmp_path / "models" / "hf"
    src.mkdir(parents=True)
    (src / "config.json").write_text("{}")
    _refused(run("convert", src, src, "--force"), "OUT", "SRC")
    _refused(run("convert", src, tmp_path / "models", "--force"), "OUT", "SRC")
    assert (src / "config.json").read_text() == "{}"


def test_serve_refuses_two_databases_in_one_file(tm_db, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    before = tm_db.read_bytes()
    _refused(run("serve", "--model", model, "--tm", tm_db, "--cache", tm_db), "--cache", "--tm")
    _refused(run("serve", "--model", model, "--tm", tm_db, "--jobs-dir", tmp_path, "--state",
                 _link("hardlink", tm_db, tmp_path / "state.sqlite")), "--state", "--tm")
    assert tm_db.read_bytes() == before
