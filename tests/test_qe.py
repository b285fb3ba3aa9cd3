"""Quality estimation: COMET backend (tiny real checkpoints, offline), LLM judge and log-prob backends, the gate,
and `tower-cat qe` writing scores into every format."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from tests import qe_files
from tests.conftest_comet import tiny_comet  # noqa: F401
from tower_cat.errors import TowerCatError
from tower_cat.qe import (Calibration, CometBackend, LLMJudgeBackend, LogprobBackend, QEItem, QEResult, QESpan,
                          fit_calibration, gate, isotonic, read_heldout_tsv, score_units)

ITEMS = [
    QEItem("The printer is out of paper.", "Der Drucker hat kein Papier mehr.", "Der Drucker hat kein Papier."),
    QEItem("Click Save to keep your changes.", "Klicken Sie auf Speichern.", "Klicken Sie auf Speichern, um zu behalten."),
    QEItem("Hello", "Hallo Welt Katze", "Hallo"),
    QEItem("Your session has expired. Please sign in again.", "Sitzung abgelaufen.", "Ihre Sitzung ist abgelaufen."),
    QEItem("Open the settings menu and select a language.", "Le chat dort sur le canapé.", "Öffnen Sie das Menü."),
]


# ---------------------------------------------------------------------------------------------------------
# COMET


@pytest.mark.parametrize("kind", ["regression", "referenceless", "unified", "xcomet"])
def test_comet_backend_equals_direct_predict(tiny_comet, kind):
    """Same scores (bit for bit) as comet.load_from_checkpoint(...).predict on the same checkpoint."""
    from comet import load_from_checkpoint

    folder = tiny_comet(kind)
    backend = CometBackend(folder, device="cpu", batch_size=2)
    items = ITEMS if kind in ("regression", "xcomet") else [QEItem(i.source, i.target) for i in ITEMS]
    results = backend.score(items)

    direct = load_from_checkpoint(str(folder / "checkpoints" / "model.ckpt"), local_files_only=True)
    samples = [{"src": i.source, "mt": i.target, **({"ref": i.reference} if i.reference else {})} for i in items]
    assert backend.samples(items) == samples
    pred = direct.predict(samples, batch_size=2, gpus=0, progress_bar=False)

    assert [r.raw["comet"] for r in results] == list(pred.scores)
    assert [r.score for r in results] == [max(0.0, min(100.0, 100 * s)) for s in pred.scores]
    assert len({round(r.score, 3) for r in results}) > 1, "tiny checkpoint should spread its scores"
    if kind == "xcomet":
        want = [[(s["start"], s["end"], s["severity"]) for s in seg if s["end"] > s["start"]]
                for seg in pred.metadata.error_spans]
        got = [[(s.start, s.end, s.severity) for s in r.error_spans] for r in results]
        assert got == want
        assert any(got), "the rigged XCOMET checkpoint marks some errors"
        for item, r in zip(items, results):
            for s in r.error_spans:
                assert isinstance(s, QESpan) and s.text == item.target[s.start:s.end]
                start, end, severity, text = s  # the tuple form the API promises
        assert "mqm_scores" in results[0].raw


def test_comet_encoder_beside_checkpoint(tiny_comet):
    """A real folder names its encoder by Hub id (xlm-roberta-large); tower-cat finds it in <model>/encoder,
    where plain COMET would go to the network."""
    folder = tiny_comet("unified", encoder="inside")
    assert "tower-cat/tiny-xlmr" in (folder / "hparams.yaml").read_text()
    results = CometBackend(folder, device="cpu").score(ITEMS[:2])
    assert all(0 <= r.score <= 100 for r in results)
    assert json.dumps(results[0].to_dict())


def test_comet_explicit_encoder_folder(tiny_comet, tmp_path):
    src = tiny_comet("unified", encoder="inside")
    model = tmp_path / "wmt22-cometkiwi-da"
    shutil.copytree(src, model)
    shutil.move(model / "encoder", tmp_path / "infoxlm")
    with pytest.raises(TowerCatError) as err:
        CometBackend(model, device="cpu").score(ITEMS[:1])
    assert "encoder" in str(err.value) and "huggingface-cli" in str(err.value)
    assert CometBackend(model, encoder=tmp_path / "infoxlm", device="cpu").score(ITEMS[:1])[0].score is not None
    # a folder named like the encoder's Hub id, next to the model folder, is found too
    shutil.move(tmp_path / "infoxlm", tmp_path / "tiny-xlmr")
    assert CometBackend(model, device="cpu").score(ITEMS[:1])[0].score is not None


def test_comet_missing_files_errors(tmp_path, tiny_comet):
    with pytest.raises(TowerCatError, match="not found"):
        CometBackend(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TowerCatError) as err:
        CometBackend(empty)
    msg = str(err.value)
    assert "checkpoints/model.ckpt" in msg and "gated" in msg and "CC-BY-NC-SA" in msg
    lfs = tmp_path / "lfs"
    (lfs / "checkpoints").mkdir(parents=True)
    (lfs / "hparams.yaml").write_text("class_identifier: unified_metric\n")
    (lfs / "checkpoints" / "model.ckpt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    with pytest.raises(TowerCatError, match="LFS pointer"):
        CometBackend(lfs)
    nohp = tmp_path / "nohp"
    shutil.copytree(tiny_comet("unified"), nohp)
    (nohp / "hparams.yaml").unlink()
    with pytest.raises(TowerCatError, match="hparams.yaml"):
        CometBackend(nohp)


def test_reference_based_model_needs_references(tiny_comet):
    backend = CometBackend(tiny_comet("regression"), device="cpu")
    assert backend.requires_reference
    with pytest.raises(TowerCatError, match="reference"):
        backend.score([QEItem("a", "b")])


# ---------------------------------------------------------------------------------------------------------
# Gate and units


class FixedBackend:
    """Scores by target text: a stand-in for a model in gate tests."""

    name = "fixed"

    def __init__(self, table):
        self.table = table
        self.calls = []

    def score(self, items):
        self.calls.append(list(items))
        return [QEResult(self.table.get(i.target)) for i in items]

    def describe(self):
        return "fixed"


def _units():
    from tower_cat.document import Segment, Unit

    def unit(uid, src, tgt, **kw):
        return Unit(uid, Segment.from_text(src), Segment.from_text(tgt) if tgt is not None else None, **kw)

    return [unit("a", "one", "eins"), unit("b", "two", "zwo"), unit("c", "three", "drei"),
            unit("d", "four", None), unit("e", "five", "fünf", locked=True), unit("f", "six", "sechs"),
            unit("g", "seven", "??")]


def test_gate_returns_exactly_units_below_threshold():
    units = _units()
    backend = FixedBackend({"eins": 90.0, "zwo": 40.0, "drei": 69.99, "fünf": 1.0, "sechs": 70.0, "??": None})
    below = gate(units, backend, 70)
    assert [u.id for u in below] == ["b", "c", "g"]  # unscorable (None) counts as below; 70.0 is not below
    assert [i.id for i in backend.calls[0]] == ["a", "b", "c", "f", "g"]  # no target / locked: not scored
    assert units[0].qe_edit == 90.0 and units[4].qe_edit is None and units[6].qe_edit is None
    assert units[1].meta["qe"]["score"] == 40.0


def test_gate_with_comet(tiny_comet):
    units = _units()[:3]
    backend = CometBackend(tiny_comet("unified"), device="cpu")
    scores = {u.id: r.score for u, r in score_units(units, backend, record=False)}
    threshold = sorted(scores.values())[1]
    assert [u.id for u in gate(units, backend, threshold)] == [k for k, v in scores.items() if v < threshold]
    assert all(u.qe_edit is not None for u in units)


def test_segment_text_keeps_text_placeholders():
    from tower_cat.document import CodeKind, InlineCode, Segment
    from tower_cat.qe import segment_text

    seg = Segment(["Page ", InlineCode("1", CodeKind.STANDALONE, "%d"), " of ",
                   InlineCode("2", CodeKind.OPEN, '<g id="2">', tag="g"), "all",
                   InlineCode("2", CodeKind.CLOSE, "</g>", tag="g")])
    assert segment_text(seg) == "Page %d of all"


# ---------------------------------------------------------------------------------------------------------
# Calibration


def test_isotonic_is_monotone_least_squares():
    kx, ky = isotonic([1, 2, 3, 4, 5], [1, 3, 2, 4, 3.5])
    assert ky == sorted(ky)
    assert kx == sorted(kx)
    assert ky[0] == 1 and math.isclose(ky[-1], 3.75)


def test_calibration_maps_monotonically_and_round_trips(tmp_path):
    lps = [-3.0, -2.0, -1.5, -1.0, -0.5, -0.1]
    human = [-25, -10, -5, -5, -1, 0]  # MQM
    cal = fit_calibration(lps, human, human_range=(-25, 0))
    values = [cal(x) for x in (-10, -3, -1.7, -1.2, -0.2, 0)]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 100.0
    assert cal.spearman is not None and cal.spearman > 0.9
    cal.save(tmp_path / "cal.json")
    back = Calibration.load(tmp_path / "cal.json")
    assert [back(x) for x in (-10, -3, -1.7, -1.2, -0.2, 0)] == values
    with pytest.raises(TowerCatError):
        (tmp_path / "bad.json").write_text("{}")
        Calibration.load(tmp_path / "bad.json")


def test_heldout_tsv_reads_wmt_layout(corpus):
    items, human = read_heldout_tsv(corpus / "wmt" / "en-de.tsv", source_lang="en", target_lang="de")
    assert len(items) == len(human) > 100
    assert items[0].reference and items[0].source_lang == "en"


# ---------------------------------------------------------------------------------------------------------
# Engine-based backends (tiny Tower-like model)


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    pytest.importorskip("ctranslate2")
    from tower_cat.engine import Engine
    from tower_cat.testing import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("qe-llama"), "llama")
    engine = Engine.load(model.ct2_path, device="cpu", threads=1)
    yield engine
    engine.close()


def test_logprob_backend_uses_engine_score(tiny_engine, tmp_path):
    from tower_cat import prompts

    items = [QEItem(i.source, i.target, source_lang="en", target_lang="de") for i in ITEMS]
    backend = LogprobBackend(tiny_engine)
    results = backend.score(items)
    msgs = [prompts.translate_messages(i.source, "en", "de", wording=tiny_engine.info.wording) for i in items]
    direct = tiny_engine.score(msgs, [i.target for i in items])
    assert [r.raw["mean_logprob"] for r in results] == direct
    assert [r.score for r in results] == [100 * math.exp(lp) for lp in direct]
    # calibration on held-out scores: a monotone map of the same log-probs
    cal = backend.fit(items, [5, 4, 3, 2, 1], force=True)  # the mechanics; refusing bad fits: test_qe_gate.py
    cal.save(tmp_path / "cal.json")
    calibrated = LogprobBackend(tiny_engine, calibration=tmp_path / "cal.json").score(items)
    order = sorted(range(len(items)), key=lambda i: direct[i])
    assert [calibrated[i].score for i in order] == sorted(calibrated[i].score for i in order)
    with pytest.raises(TowerCatError, match="language"):
        backend.score([QEItem("a", "b")])


class ScriptedEngine:
    """Replies from a script: checks the judge's prompts and parsing without a model."""

    class info:
        wording = "instruct"

    path = "scripted"

    def __init__(self, replies):
        self.replies = replies
        self.prompts = []

    def generate(self, prompts, options=None):
        from types import SimpleNamespace

        self.prompts.extend(prompts)
        return [SimpleNamespace(text=self.replies(p[0]["content"])) for p in prompts]

    def unload(self):
        pass


def test_llm_judge_parses_scores_and_spans():
    from tower_cat import prompts

    def replies(content):
        if "Score:" in content:
            return "Score: 85" if "Drucker" in content else "I cannot rate this."
        return '"kein Papier" - major\n"mehr" - minor' if "Drucker" in content else "No errors."

    engine = ScriptedEngine(replies)
    items = [QEItem("The printer is out of paper.", "Der Drucker hat kein Papier mehr.", source_lang="en",
                    target_lang="de"), QEItem("Hello", "Hallo", source_lang="en", target_lang="de")]
    results = LLMJudgeBackend(engine).score(items)
    assert engine.prompts[0] == prompts.qe_messages(items[0].source, items[0].target, "en", "de", kind="score")
    assert engine.prompts[2] == prompts.qe_messages(items[0].source, items[0].target, "en", "de", kind="spans")
    assert results[0].score == 85.0
    assert results[0].error_spans == [QESpan(16, 27, "major", "kein Papier"), QESpan(28, 32, "minor", "mehr")]
    assert results[1].score is None and results[1].error_spans == []


def test_llm_judge_on_tiny_model(tiny_engine):
    items = [QEItem(i.source, i.target, source_lang="en", target_lang="de") for i in ITEMS[:2]]
    results = LLMJudgeBackend(tiny_engine, max_new_tokens=8).score(items)
    assert len(results) == 2
    for r in results:  # a random model rarely says a number: None or a 0-100 score, never an exception
        assert r.score is None or 0 <= r.score <= 100
        assert "reply" in r.raw


# ---------------------------------------------------------------------------------------------------------
# tower-cat qe on every format

REVIEW_STATE = {"xliff12": "needs-review-translation", "sdlxliff": "Draft", "mqxliff": "Pretranslated",
                "xliff2": "translated", "po": "fuzzy"}


def _available(fmt):
    try:
        __import__(f"tower_cat.formats.{fmt}")
    except ImportError:
        return False
    return True


def _run_cli(args):
    from click.testing import CliRunner

    from tower_cat.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("fmt", list(qe_files.FORMATS))
def test_qe_cli_writes_scores_into_each_format(fmt, tiny_comet, tmp_path):
    if not _available(fmt):
        pytest.skip(f"tower_cat.formats.{fmt} is not written yet")
    from tower_cat.formats import load as load_document

    src = qe_files.write(fmt, tmp_path)
    before = src.read_bytes()
    out = tmp_path / "out" / src.name
    model = tiny_comet("unified")
    # first pass: scores only, to pick a threshold that splits the units
    report = json.loads(_run_cli(["qe", str(src), "--model", str(model), "--json"]))
    segs = report["files"][0]["segments"]
    assert len(segs) == 4  # the empty target is not scored
    scores = sorted(s["score"] for s in segs)
    threshold = (scores[1] + scores[2]) / 2
    below = {s["unit"] for s in segs if s["score"] < threshold}
    assert len(below) == 2

    data = json.loads(_run_cli(["qe", str(src), "--model", str(model), "--threshold", str(threshold), "-o", str(out),
                                "--report", str(tmp_path / "r.html"), "--json"]))
    assert src.read_bytes() == before, "the input is never modified without --in-place"
    assert set(data["files"][0]["marked"]) == below
    doc = load_document(out)
    got = {u.id: (u.qe_score if u.qe_score is not None else u.match_score) for u in doc.units if u.has_target}
    want = {s["unit"]: s["score"] for s in segs}
    assert set(got) == set(want)
    for uid, score in want.items():
        assert got[uid] is not None and abs(got[uid] - score) <= 0.51, (uid, got[uid], score)
    for unit in doc.units:
        if unit.id in below:
            assert unit.state == REVIEW_STATE[fmt], (unit.id, unit.state)
        elif unit.has_target:
            assert unit.state != REVIEW_STATE[fmt] or fmt == "xliff2"
    if fmt == "xliff2":
        assert out.read_text(encoding="utf-8").count('subState="tower-cat:needs-review"') == 2
    assert (tmp_path / "r.html").stat().st_size > 1000


def test_qe_cli_in_place_and_summary(tiny_comet, tmp_path):
    if not _available("xliff12"):
        pytest.skip("xliff12 module missing")
    src = qe_files.write("xliff12", tmp_path)
    before = src.read_text(encoding="utf-8")
    text = _run_cli(["qe", str(src), "--model", str(tiny_comet("unified")), "--in-place", "--threshold", "0"])
    assert "4 scored" in text and "0 below 0" in text
    after = src.read_text(encoding="utf-8")
    assert after != before and after.count("its:mtConfidence=") == 4


def test_qe_cli_usage_errors(tiny_comet, tmp_path):
    from click.testing import CliRunner

    from tower_cat.cli import cli

    src = qe_files.write("po", tmp_path)
    r = CliRunner().invoke(cli, ["qe", str(src), "--model", str(tiny_comet("unified")), "-o", str(tmp_path / "x"),
                                 "--in-place"])
    assert r.exit_code != 0 and "either" in r.output
    r = CliRunner().invoke(cli, ["qe", str(src), "--model", str(tmp_path)])
    assert r.exit_code != 0 and "COMET" in str(r.exception) + r.output


def test_qe_cli_logprob_with_fitted_calibration(tiny_engine, tmp_path):
    if not _available("xliff12"):
        pytest.skip("xliff12 module missing")
    tsv = tmp_path / "heldout.tsv"
    tsv.write_text("system\tseg_id\tsource\tmt\treference\thuman_score\n" + "".join(
        f"s\t{n}\t{i.source}\t{i.target}\t{i.reference}\t{-n}\n" for n, i in enumerate(ITEMS)), encoding="utf-8")
    src = qe_files.write("xliff12", tmp_path)
    cal = tmp_path / "cal.json"
    data = json.loads(_run_cli(["qe", str(src), "--backend", "logprob", "--model", str(tiny_engine.path),
                                "--device", "cpu", "--fit-calibration", str(tsv), "--calibration", str(cal),
                                "--source-lang", "en", "--force", "--json"]))
    assert json.loads(cal.read_text())["n"] == len(ITEMS)
    segs = data["files"][0]["segments"]
    assert len(segs) == 4 and all(0 <= s["score"] <= 100 and "mean_logprob" in s["raw"] for s in segs)
    assert data["backend"].endswith("(calibrated)")


def test_comet_device_names(tiny_comet):
    with pytest.raises(TowerCatError, match="unknown device"):
        CometBackend(tiny_comet("unified"), device="tpu").score(ITEMS[:1])
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(TowerCatError, match="no CUDA GPU"):
            CometBackend(tiny_comet("unified"), device="cuda:0").score(ITEMS[:1])
