"""The one translation core (tower_cat.core): every door sends the same prompt for the same segment.

An engine spy (``Engine.generate`` wrapped at class level, so the CLI's engine, the server's and the sessions'
are all seen) records the prompts as the model reads them (the chat template applied). For one segment, one TM
(samples/tower-notes.tmx plus two close matches), one glossary (samples/glossary.de.csv) and no context,
``tower-cat translate``, ``/v1/translate``, DeepL ``/v2/translate``, LibreTranslate ``/translate`` and the first
turn of a ``/v1/sessions`` session must send byte-identical prompts, with the TM examples in the order the
fine-tuning data is built with; a tagged segment with an exact TM match is answered from the TM by every road
without an engine call; a segment too long for the context window is refused before any engine work.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.serving import serving
from tower_cat.adapters.service import ServerConfig, Service
from tower_cat.adapters.tags import parse_markup

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
GLOSSARY = SAMPLES / "glossary.de.csv"
NEW_TOKENS = 12

SOURCE = "The note could not be saved because the file is locked."
CLOSE_MATCHES = [  # two fuzzy matches of SOURCE at different scores (the sample TMX has one below 70)
    ("The note could not be saved because the disk is full.",
     "Die Notiz konnte nicht gespeichert werden, weil die Festplatte voll ist."),
    ("The file could not be saved because it is locked.",
     "Die Datei konnte nicht gespeichert werden, weil sie gesperrt ist."),
]
TAGGED = 'Click <g id="1">Save</g> to keep your note.'
TAGGED_DE = 'Klicken Sie auf <g id="1">Speichern</g>, um Ihre Notiz zu behalten.'


def _xliff(units: list[tuple[str, str]]) -> str:
    body = "".join(f'<trans-unit id="{uid}"><source>{src}</source></trans-unit>' for uid, src in units)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" '
            'xmlns="urn:oasis:names:tc:xliff:document:1.2"><file original="app" source-language="en" '
            f'target-language="de" datatype="plaintext"><body>{body}</body></file></xliff>\n')


# ----------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tm_path(tmp_path_factory):
    from tower_cat.tm import TranslationMemory

    path = tmp_path_factory.mktemp("core-tm") / "tm.sqlite"
    with TranslationMemory(path) as tm:
        tm.import_file(SAMPLES / "tower-notes.tmx")
        tm.add_many(CLOSE_MATCHES, "en", "de")
        tm.add(parse_markup(TAGGED, "xml").segment, parse_markup(TAGGED_DE, "xml").segment, "en", "de")
    return path


@pytest.fixture(scope="module")
def server(engine, tm_path, tmp_path_factory):
    from tower_cat.tm import TranslationMemory

    tm = TranslationMemory(tm_path)
    config = ServerConfig(max_new_tokens=NEW_TOKENS, glossaries=[str(GLOSSARY)], tm_min_score=70.0, tm_examples=3,
                          sessions=str(tmp_path_factory.mktemp("core-sessions") / "sessions.sqlite"))
    service = Service(engine, config, tm=tm)
    with serving(service) as srv:
        yield srv


class EngineSpy:
    """Every prompt any Engine receives, as the model reads it (chat template applied)."""

    def __init__(self, monkeypatch):
        from tower_cat.engine import Engine

        self.prompts: list[str] = []
        original = Engine.generate
        spy = self

        def generate(engine, prompts, options=None, **kw):
            spy.prompts.extend(engine.render(p).text for p in prompts)
            return original(engine, prompts, options, **kw)

        monkeypatch.setattr(Engine, "generate", generate)

    def take(self) -> list[str]:
        out, self.prompts = self.prompts, []
        return out


@pytest.fixture
def spy(monkeypatch):
    return EngineSpy(monkeypatch)


def _cli(tiny_llama, tm_path, tmp_path, units, capsys) -> dict:
    from tower_cat.cli import main

    src = tmp_path / "in.xlf"
    src.write_text(_xliff(units), encoding="utf-8")
    main(["translate", str(src), "-o", str(tmp_path / "out.xlf"), "--model", str(tiny_llama.ct2_path),
          "--tm", str(tm_path), "--glossary", str(GLOSSARY), "--context", "0", "--no-cache", "--device", "cpu",
          "--threads", "1", "--max-new-tokens", str(NEW_TOKENS), "--json", "--no-progress"])
    return json.loads(capsys.readouterr().out)


# ----------------------------------------------------------------------------------------------------- prompts


def test_every_road_sends_the_same_prompt(server, spy, tiny_llama, tm_path, tmp_path, capsys):
    sent: dict[str, list[str]] = {}
    report = _cli(tiny_llama, tm_path, tmp_path, [("u1", SOURCE)], capsys)
    assert report["files"][0]["results"][0]["action"] in ("mt", "not-written")
    sent["cli"] = spy.take()
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for road in ("v1", "deepl", "libretranslate"):
            if road == "v1":
                r = http.post("/v1/translate", json={"source_lang": "en", "target_lang": "de", "segments": [SOURCE]})
            elif road == "deepl":
                r = http.post("/v2/translate", data={"text": SOURCE, "source_lang": "EN", "target_lang": "DE"})
            else:
                r = http.post("/translate", json={"q": SOURCE, "source": "en", "target": "de"})
            assert r.status_code == 200, r.text
            sent[road] = spy.take()
            if road == "v1":  # the core's checks reach the wire: QA findings and glossary compliance ("note")
                answer = r.json()["translations"][0]
                assert isinstance(answer["qa"], list) and answer["terms_ok"] in (True, False)
                assert answer["examples"] == 2 and answer["origin"] == "mt"
        r = http.post("/v1/sessions", json={"source_lang": "en", "target_lang": "de", "segment": SOURCE})
        assert r.status_code == 201, r.text
        sent["session"] = spy.take()
    first = sent["cli"][0]
    for road, prompts in sent.items():
        assert prompts, f"{road}: no engine call"
        # a road may call again (terminology repair from the n-best list): always with the same prompt
        assert set(prompts) == {first}, f"{road} sent another prompt than tower-cat translate:\n{prompts[0]}"
    # what the prompt holds: the glossary term, the two close matches, the best one first
    assert "note = Notiz" in first
    positions = [first.index(src) for src, _ in CLOSE_MATCHES]
    assert all(p > 0 for p in positions)


def test_examples_come_best_first_like_the_finetuning_data(engine, tm_path):
    from tower_cat.core import TranslationOptions, Translator
    from tower_cat.finetune.data import DataConfig, FewShotMemory, Pair
    from tower_cat.tm import TranslationMemory

    with TranslationMemory(tm_path, readonly=True) as tm:
        core = Translator(engine, tm=tm, options=TranslationOptions(few_shot=3, fuzzy_min=70.0))
        runtime, best = core.reuse.examples(parse_markup(SOURCE, "text").segment, "en", "de")
        scores = [m.score for m in tm.lookup(SOURCE, "en", "de", limit=3, min_score=70.0)]
        prompt = core.prepare_translation(core_request(SOURCE), "en", "de").messages[-1]["content"]
        pairs = [Pair(s.text, t.text, "en", "de") for _, _, s, t, _ in tm.iter_entries("en", "de")
                 if not s.codes]
    assert len(runtime) == 2 and best is not None and best >= 70
    fewshot = FewShotMemory(DataConfig(fewshot_min_score=70.0))  # what `tower-cat finetune data` builds with
    try:
        for pair in pairs:
            fewshot.add(pair)
        fewshot.flush()
        trained = fewshot.examples(Pair(SOURCE, "", "en", "de"), 3)
    finally:
        fewshot.close()
    assert runtime == trained
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert prompt.index(runtime[0][0]) < prompt.index(runtime[1][0]) < prompt.index("English: " + SOURCE)


def core_request(text: str):
    from tower_cat.core import SegmentRequest

    return SegmentRequest(parse_markup(text, "text").segment)


# ----------------------------------------------------------------------------------------------------- TM


def test_tagged_exact_match_is_answered_from_the_tm_by_every_road(server, spy, tiny_llama, tm_path, tmp_path,
                                                                   capsys):
    report = _cli(tiny_llama, tm_path, tmp_path, [("u1", TAGGED)], capsys)
    result = report["files"][0]["results"][0]
    assert result["action"] == "tm" and result["origin"] == "tm-exact", result
    assert '<g id="1">Speichern</g>' in (tmp_path / "out.xlf").read_text(encoding="utf-8")
    with httpx.Client(base_url=server.url, timeout=120) as http:
        r = http.post("/v1/translate", json={"source_lang": "en", "target_lang": "de", "segments": [TAGGED]})
        assert r.status_code == 200, r.text
        one = r.json()["translations"][0]
        assert one["origin"] == "tm-exact" and one["text"] == TAGGED_DE and one["tags_ok"]
        r = http.post("/v2/translate", data={"text": TAGGED, "source_lang": "EN", "target_lang": "DE",
                                             "tag_handling": "xml"})
        assert r.status_code == 200, r.text
        assert r.json()["translations"][0]["text"] == TAGGED_DE
        r = http.post("/translate", json={"q": TAGGED, "source": "en", "target": "de", "format": "html"})
        assert r.status_code == 200, r.text
        assert r.json()["translatedText"] == TAGGED_DE
        r = http.post("/v1/sessions", json={"source_lang": "en", "target_lang": "de", "segment": TAGGED})
        assert r.status_code == 201, r.text
        first = r.json()["current"]
        assert first["text"] == TAGGED_DE and first["origin"] == "tm-exact" and first["codes_ok"]
    assert spy.take() == [], "an exact TM match must not reach the engine"


def test_tm_match_with_other_codes_is_an_example_not_an_answer(engine, tm_path):
    """The stored segment's codes do not line up with the query's (one tag more): the model translates, with
    the match shown as an example."""
    from tower_cat.core import Translator
    from tower_cat.tm import TranslationMemory

    query = parse_markup('Click <g id="1">Save</g> to keep your <g id="2">note</g>.', "xml").segment
    with TranslationMemory(tm_path, readonly=True) as tm:
        core = Translator(engine, tm=tm)
        from tower_cat import codes

        assert core.reuse.exact(query, codes.render(query), "en", "de") is None


# ----------------------------------------------------------------------------------------------------- limits


def test_too_long_segment_is_refused_before_any_engine_work(server, spy, engine):
    from tower_cat.core import Translator
    from tower_cat.errors import SegmentTooLong, TowerCatError

    text = "<b>x</b>" * 1000
    with pytest.raises(SegmentTooLong) as exc:
        Translator(engine).translate([core_request(text)], "en", "de")
    assert isinstance(exc.value, TowerCatError) and "context window" in str(exc.value)
    with httpx.Client(base_url=server.url, timeout=120) as http:
        r = http.post("/v1/translate", json={"source_lang": "en", "target_lang": "de", "segments": [text]})
        assert r.status_code == 400 and "too long for the model's context window" in r.text, r.text
        r = http.post("/v2/translate", data={"text": text, "source_lang": "EN", "target_lang": "DE",
                                             "tag_handling": "xml"})
        assert r.status_code == 400 and "context window" in r.json()["message"], r.text
        r = http.post("/translate", json={"q": text, "source": "en", "target": "de", "format": "html"})
        assert r.status_code == 400 and "context window" in r.json()["error"], r.text
    assert spy.take() == [], "a prompt that cannot fit must never reach the engine"


# ----------------------------------------------------------------------------------------------------- output


def test_output_is_cleaned_like_the_files(engine):
    """C0/C1 controls and U+FFFD the source lacks are dropped; the source's outer blanks kept (every road)."""
    from tower_cat.core import SegmentRequest, Translator
    from tower_cat.engine import Generation, Hypothesis

    def generate(prompts, options, *, sources):
        return [Generation((Hypothesis("Die\x85 Notiz\x07 ist gespeichert.\ufffd", (), -0.1, False),))
                for _ in prompts]

    core = Translator(engine, generate=generate)
    res = core.translate([SegmentRequest(parse_markup("  The note is saved.\n", "text").segment)], "en", "de")[0]
    assert res.text == "  Die Notiz ist gespeichert.\n"
    assert res.origin == "mt" and res.tags_ok and res.confidence is not None


# ----------------------------------------------------------------------------------------------------- batching


def test_concurrent_requests_share_engine_calls_through_the_core(server, monkeypatch):
    """Micro-batching stays: while the engine is busy, requests that went through the core's steps wait in the
    batcher and the next engine call carries all of them."""
    import threading
    import time

    from tower_cat.engine import Engine

    service = server.service
    original = Engine.generate
    busy, release = threading.Event(), threading.Event()
    batches: list[int] = []

    def generate(engine, prompts, options=None, **kw):
        batches.append(len(prompts))
        if not busy.is_set():  # the first call holds the worker until the others are queued
            busy.set()
            release.wait(60)
        return original(engine, prompts, options, **kw)

    monkeypatch.setattr(Engine, "generate", generate)
    texts = [f"The workspace number {i} was archived by its owner yesterday." for i in range(7)]
    results: list = [None] * len(texts)

    def post(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            results[i] = http.post("/v1/translate", json={"source_lang": "en", "target_lang": "de",
                                                          "segments": [texts[i]], "use_tm": False})

    first = threading.Thread(target=post, args=(0,))
    first.start()
    assert busy.wait(60)
    others = [threading.Thread(target=post, args=(i,)) for i in range(1, len(texts))]
    for t in others:
        t.start()
    deadline = time.monotonic() + 60
    while service.batcher.pending < len(texts) and time.monotonic() < deadline:  # 1 running + 6 queued
        time.sleep(0.01)
    assert service.batcher.pending == len(texts)
    release.set()
    for t in [first, *others]:
        t.join(120)
    assert all(r is not None and r.status_code == 200 for r in results)
    assert batches[0] == 1 and max(batches[1:]) == len(texts) - 1, batches  # the six waiting requests: one call
