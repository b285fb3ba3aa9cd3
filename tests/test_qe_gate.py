"""`tower-cat qe` as a gate (issue 17, item 5), on third-party files from ../shared/corpus/ (skipped when absent):
--fail-under, word-weighted means, QA and --glossary compliance in the summary/report/files, TM provenance left as
the file had it, and calibration fits refused when their rank correlation is too weak."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from tests.conftest_comet import tiny_comet  # noqa: F401
from tower_cat.cli import cli

TRADOS = "sdlxliff/disfr/Configuring_Spelling_Checker.doc.sdlxliff"  # en-US -> fr-FR, TM segments at 100 %


def _trados(corpus: Path, tmp_path: Path) -> Path:
    src = corpus / TRADOS
    if not src.exists():
        pytest.skip(f"{TRADOS} is not in the corpus")
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    return dst


def _qe(args, code: int = 0):
    result = CliRunner().invoke(cli, ["qe", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def _glossary(tmp_path: Path) -> Path:
    path = tmp_path / "glossary.csv"
    path.write_text("source,target\nspelling checker,vérificateur orthographique\ndialog box,boîte de dialogue\n",
                    encoding="utf-8")
    return path


def test_fail_under_gates_on_the_word_weighted_mean(corpus, tmp_path, tiny_comet):
    from tower_cat.analysis import count_words
    from tower_cat.formats import load

    path = _trados(corpus, tmp_path)
    model = tiny_comet("unified")
    data = json.loads(_qe([path, "--model", model, "--json"]).stdout)
    segs = data["files"][0]["segments"]
    doc = {u.id: u for u in load(path).units}
    scores = [s["score"] for s in segs]
    words = [max(1, count_words(doc[s["unit"]].source.text)) for s in segs]
    weighted = sum(s * w for s, w in zip(scores, words)) / sum(words)
    assert data["files"][0]["weighted_mean"] == pytest.approx(weighted)
    assert data["total"]["weighted_mean"] == pytest.approx(weighted)
    assert data["total"]["words"] == sum(count_words(doc[s["unit"]].source.text) for s in segs)
    assert data["gate"] is None

    # below the statistic: exit 1 (JSON still printed, with the gate's verdict); at or above: exit 0
    above = _qe([path, "--model", model, "--json", "--fail-under", f"{weighted + 0.5:.2f}"], code=1)
    gate = json.loads(above.stdout)["gate"]
    assert gate == {"statistic": "weighted-mean", "value": pytest.approx(weighted, abs=0.05),
                    "fail_under": pytest.approx(round(weighted + 0.5, 2)), "failed": True}
    _qe([path, "--model", model, "--fail-under", f"{weighted - 0.5:.2f}"])
    text = _qe([path, "--model", model, "--fail-under", "100", "--fail-on", "min"], code=1).output
    assert "FAIL" in text and "word-weighted mean" in text
    assert min(scores) < 100


def test_report_shows_qa_terms_and_weighted_means(corpus, tmp_path, tiny_comet):
    path = _trados(corpus, tmp_path)
    report = tmp_path / "report.json"
    data = json.loads(_qe([path, "--model", tiny_comet("unified"), "--glossary", _glossary(tmp_path), "--json",
                           "--report", report]).stdout)
    f = data["files"][0]
    # the glossary's two terms occur in the file; "dialog box" is translated "fenêtre" in one segment
    assert f["terms"]["checked"] >= 4 and 0 < f["terms"]["ok"] < f["terms"]["checked"]
    assert f["qa"]["checked"] == f["scored"] and f["qa"]["errors"] >= 1
    rep = json.loads(report.read_text(encoding="utf-8"))
    assert rep["total"]["issues"] >= f["qa"]["errors"], "the report no longer says 'QA issues 0'"
    assert rep["total"]["terms"]["checked"] == f["terms"]["checked"]
    # the report reads the scores written into the units (rounded to 0.01)
    assert rep["total"]["stats"]["weighted_mean"] == pytest.approx(data["total"]["weighted_mean"], abs=0.01)
    assert any("terms" in i for r in rep["rows"] for i in r["issues"])
    segs = data["files"][0]["segments"]
    assert sum(len(s["qa"]) for s in segs) == f["qa"]["errors"] + f["qa"]["warnings"]
    assert sum((s["terms"] or {}).get("checked", 0) for s in segs) == f["terms"]["checked"]
    html = tmp_path / "report.html"
    _qe([path, "--model", tiny_comet("unified"), "--glossary", _glossary(tmp_path), "--report", html])
    page = html.read_text(encoding="utf-8")
    assert "word-weighted mean" in page and "term compliance" in page


def test_marking_a_tm_segment_keeps_its_provenance(corpus, tmp_path, tiny_comet):
    """Demoting a Trados TM segment changes conf only: origin, origin-system and the TM percent stay; the QE score
    is the segment's comment (Trados' Comments window) and in the JSON."""
    from lxml import etree

    from tower_cat.formats import load
    from tower_cat.formats.sdlxliff import SDL_NS

    path = _trados(corpus, tmp_path)
    out = tmp_path / "out.sdlxliff"
    before = {s.get("id"): dict(s.attrib) for s in etree.parse(str(path)).iter(f"{{{SDL_NS}}}seg")}
    data = json.loads(_qe([path, "--model", tiny_comet("unified"), "--threshold", "100", "-o", out, "--json",
                           "--glossary", _glossary(tmp_path)]).stdout)
    marked = data["files"][0]["marked"]
    assert marked
    after = {s.get("id"): dict(s.attrib) for s in etree.parse(str(out)).iter(f"{{{SDL_NS}}}seg")}
    doc = {u.id: u for u in load(out).units}
    for uid in marked:
        mid = uid.split("#", 1)[1]
        old, new = before[mid], after[mid]
        assert new["conf"] == "Draft"
        if old.get("origin") not in ("mt", "nmt", "amt", "automatic-translation"):
            assert {k: v for k, v in new.items() if k != "conf"} == {k: v for k, v in old.items() if k != "conf"}, \
                "origin, origin-system and percent stay the TM's / the translator's"
        score = next(s["score"] for s in data["files"][0]["segments"] if s["unit"] == uid)
        qe = [f for f in doc[uid].meta["findings"] if f.check == "qe"]
        assert qe and qe[0].message.startswith(f"QE {score:.1f} below 100")
    tm = [u for u in doc.values() if u.origin == "tm"]
    assert tm and all(u.match_score == 100.0 for u in tm)
    # a second run replaces those comments instead of adding more
    _qe([out, "--model", tiny_comet("unified"), "--threshold", "100", "--in-place"])
    assert out.read_text(encoding="utf-8-sig").count("<cmt-def ") == sum(
        1 for u in doc.values() if u.meta.get("findings"))


class _FixedLogprobs:
    """A log-prob backend whose log-probs are given (the fit's logic without a model)."""

    def __new__(cls, logprobs):
        from tower_cat.qe import LogprobBackend

        class Fixed(LogprobBackend):
            def __init__(self):
                self.engine = SimpleNamespace(path="fixed")
                self.calibration = None
                self.source_lang = self.target_lang = None

            def logprobs(self, items):
                return list(logprobs[:len(items)])

        return Fixed()


def test_calibration_refuses_a_weak_fit_unless_forced(corpus):
    from tower_cat.qe import CalibrationRefused, check_calibration, read_heldout_tsv

    tsv = corpus / "wmt" / "en-de.tsv"
    if not tsv.exists():
        pytest.skip("wmt/en-de.tsv is not in the corpus")
    items, human = read_heldout_tsv(tsv, source_lang="en", target_lang="de")
    items, human = items[:400], human[:400]
    rng = random.Random(17)
    noise = [rng.uniform(-3, 0) for _ in items]  # log-probs unrelated to the human scores
    backend = _FixedLogprobs(noise)
    with pytest.raises(CalibrationRefused, match="Spearman"):
        backend.fit(items, human)
    assert backend.calibration is None, "a refused fit is not installed"
    forced = backend.fit(items, human, force=True)
    assert backend.calibration is forced and check_calibration(forced) is not None
    # log-probs that follow the human ranking (plus noise) pass
    lo, hi = min(human), max(human)
    related = [-(hi - h) / (hi - lo) * 2 + rng.uniform(-0.3, 0.3) for h in human]
    good = _FixedLogprobs(related).fit(items, human)
    assert good.spearman > 0.5 and check_calibration(good) is None
    assert len({round(good(v), 6) for v in related}) > 5, "a useful map does not give every unit one score"


def test_cli_refuses_a_fit_with_inverted_ranks(tmp_path, corpus):
    """`--fit-calibration` on held-out scores that rank the tiny model's log-probs backwards: refused (exit 1, no
    calibration written); --force keeps it with a warning."""
    pytest.importorskip("ctranslate2")
    from tower_cat.engine import Engine
    from tower_cat.qe import LogprobBackend, QEItem, read_heldout_tsv
    from tower_cat.testing import build_tiny_model

    tsv = corpus / "wmt" / "en-de.tsv"
    if not tsv.exists():
        pytest.skip("wmt/en-de.tsv is not in the corpus")
    items, _ = read_heldout_tsv(tsv, source_lang="en", target_lang="de")
    items = [i for i in items if len(i.source) < 120][:12]
    model = build_tiny_model(tmp_path / "model", "llama")
    engine = Engine.load(model.ct2_path, device="cpu", threads=1)
    try:
        lps = LogprobBackend(engine).logprobs([QEItem(i.source, i.target, None, "en", "de") for i in items])
    finally:
        engine.close()
    order = sorted(range(len(items)), key=lambda k: lps[k])
    human = [0.0] * len(items)
    for rank, k in enumerate(order):
        human[k] = float(len(items) - rank)  # the best log-prob gets the worst human score
    held = tmp_path / "heldout.tsv"
    held.write_text("source\tmt\thuman_score\n" + "".join(f"{i.source}\t{i.target}\t{h}\n"
                                                          for i, h in zip(items, human)), encoding="utf-8")
    src = tmp_path / "file.xlf"
    src.write_text('<?xml version="1.0"?><xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">'
                   '<file original="x" source-language="en" target-language="de" datatype="plaintext"><body>'
                   '<trans-unit id="1"><source>Hello</source><target>Hallo</target></trans-unit>'
                   "</body></file></xliff>", encoding="utf-8")
    cal = tmp_path / "cal.json"
    args = ["qe", str(src), "--backend", "logprob", "--model", str(model.ct2_path), "--device", "cpu",
            "--fit-calibration", str(held), "--calibration", str(cal)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code != 0
    message = str(refused.exception) + refused.output
    assert "calibration refused" in message and "Spearman -" in message
    assert not cal.exists()
    forced = CliRunner().invoke(cli, args + ["--force"])
    assert forced.exit_code == 0, forced.output
    assert "warning: calibration kept with --force" in forced.output and cal.exists()
