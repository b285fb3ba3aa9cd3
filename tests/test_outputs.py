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

from tests.cli_runner import run_cli
from tower_cat.errors import OutputError
from tower_cat.outputs import refuse_output_folder_overlaps, refuse_overlaps, same_file

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
    code, out, err = run_cli(_capsys, *args)
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


# finetune writes folders (checkpoints, datasets, exports; `train` clears its --out first): the output folder may
# be neither an input nor hold one. Every input here is an empty or minimal stand-in: the refusal comes first.

@pytest.fixture
def tuning_inputs(tmp_path) -> dict[str, Path]:
    work = tmp_path / "work"
    (work / "base").mkdir(parents=True)
    (work / "base" / "config.json").write_text("{}")
    shutil.copy(SAMPLES / "tower-notes.tmx", work / "client.tmx")
    shutil.copy(SAMPLES / "glossary.de.csv", work / "g.csv")
    run_dir = work / "run"   # a finetune output: hf/ ct2/ data/
    for sub in ("hf", "ct2", "data/train", "data/sft"):
        (run_dir / sub).mkdir(parents=True)
    (run_dir / "hf" / "config.json").write_text("{}")
    (run_dir / "data" / "heldout.jsonl").write_text('{"source": "a", "target": "b"}\n')
    return {"work": work, "base": work / "base", "tmx": work / "client.tmx", "glossary": work / "g.csv",
            "run": run_dir}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def test_finetune_refuses_an_out_folder_over_or_around_its_inputs(tuning_inputs, tmp_path):
    i = tuning_inputs
    before = _snapshot(i["work"])
    _refused(run("finetune", "--tm", i["tmx"], "--base", i["base"], "--out", i["base"]), "--out", "--base")
    _refused(run("finetune", "--tm", i["tmx"], "--base", i["base"], "--out", i["work"]), "--out", "--tm")
    _refused(run("finetune", "--tm", i["tmx"], "--glossary", i["glossary"], "--base", i["base"],
                 "--out", _link("symlink", i["work"], tmp_path / "alias")), "--out", "--tm")
    configs = tmp_path / "configs"
    configs.mkdir()
    config = configs / "ddp.yaml"
    config.write_text("distributed_type: MULTI_GPU\n")   # refused before `accelerate launch` is started
    _refused(run("finetune", "--tm", "postgresql://h/db", "--base", i["base"], "--accelerate-config", config,
                 "--out", configs), "--out", "--accelerate-config")
    assert _snapshot(i["work"]) == before
    assert config.read_text() == "distributed_type: MULTI_GPU\n"


def test_finetune_data_refuses_an_out_folder_holding_its_memories(tuning_inputs):
    i = tuning_inputs
    before = _snapshot(i["work"])
    _refused(run("finetune", "data", "--tm", i["tmx"], "--out", i["work"]), "--out", "--tm")
    _refused(run("finetune", "data", "--tm", i["tmx"], "--tokenizer", i["base"], "--out", i["base"]), "--out",
             "--tokenizer")
    assert _snapshot(i["work"]) == before


def test_finetune_train_refuses_an_out_folder_over_its_data_or_base(tuning_inputs):
    i = tuning_inputs
    data = i["run"] / "data"
    before = _snapshot(i["work"])
    for out, flag in ((data / "sft", "--data"), (i["run"], "--data"), (i["base"], "--base")):
        _refused(run("finetune", "train", "--data", data, "--stage", "sft", "--base", i["base"], "--out", out),
                 "--out", flag)
    assert _snapshot(i["work"]) == before


def test_finetune_dpo_refuses_an_out_folder_over_its_model_pairs_or_qe_model(tuning_inputs, tmp_path):
    i = tuning_inputs
    pairs = i["run"] / "data" / "heldout.jsonl"
    models = tmp_path / "models"
    (models / "comet").mkdir(parents=True)
    comet = models / "comet"
    before = _snapshot(i["work"])
    _refused(run("finetune", "dpo", "--model", i["run"], "--out", i["run"]), "--out", "--model")
    _refused(run("finetune", "dpo", "--model", i["run"], "--out", i["run"] / "hf"), "--out", "--model")
    _refused(run("finetune", "dpo", "--model", i["run"], "--pairs", pairs, "--out", i["run"] / "data"), "--out",
             "--pairs")
    _refused(run("finetune", "dpo", "--model", i["run"], "--qe", f"comet:{comet}", "--out", models), "--out",
             "--qe")
    assert _snapshot(i["work"]) == before


def test_finetune_rl_refuses_an_out_folder_over_its_model_or_glossary(tuning_inputs, tmp_path):
    i = tuning_inputs
    before = _snapshot(i["work"])
    _refused(run("finetune", "rl", "--model", i["run"], "--out", i["run"] / "data"), "--out", "--model")
    _refused(run("finetune", "rl", "--model", i["run"], "--glossary", i["glossary"], "--out", i["work"]), "--out",
             "--model")
    terms = tmp_path / "terms"
    terms.mkdir()
    _refused(run("finetune", "rl", "--model", i["run"], "--glossary", _link("hardlink", i["glossary"],
                 terms / "g.csv"), "--out", terms), "--out", "--glossary")
    assert _snapshot(i["work"]) == before


def test_finetune_evaluate_refuses_to_save_over_its_heldout(tuning_inputs):
    heldout = tuning_inputs["run"] / "data" / "heldout.jsonl"
    before = heldout.read_bytes()
    _refused(run("finetune", "evaluate", "--model", tuning_inputs["run"] / "ct2", "--heldout", heldout,
                 "--save", heldout), "--save", "--heldout")
    assert heldout.read_bytes() == before


def test_output_folder_beside_or_below_its_inputs_is_allowed(tuning_inputs, tmp_path):
    i = tuning_inputs
    reads = {"--tm": [i["tmx"], "postgresql://h/db"], "--base": i["base"], "--glossary": None}
    refuse_output_folder_overlaps({"--out": tmp_path / "tuned"}, reads)        # a new folder beside them
    refuse_output_folder_overlaps({"--out": i["base"] / "tuned"}, reads)       # below a model folder: none replaced
    refuse_output_folder_overlaps({"--out": i["work"] / "client"}, reads)      # a name that only starts alike
    with pytest.raises(OutputError, match="--tm .* is inside it"):
        refuse_output_folder_overlaps({"--out": i["work"]}, reads)
    if hasattr(os, "link"):   # identity too: a hard link is the same file wherever it is
        hard = tmp_path / "hard.tmx"
        os.link(i["tmx"], hard)
        with pytest.raises(OutputError, match="same file"):
            refuse_output_folder_overlaps({"--out": hard}, reads)
