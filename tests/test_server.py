"""`tower-cat serve`: the HTTP server driven by the real clients CAT tools use.

A tiny random Llama (tower_cat.testing) is served on 127.0.0.1 (uvicorn in a thread, free port); the official
`deepl` client, `libretranslatepy`, and httpx with the exact request shapes of OmegaT's Apertium connector and
Weblate talk to it. Translations are garbage (random weights) — what is checked is the protocol: fields,
codes, errors, inline tags back intact and properly nested, batching under concurrent load, bounded memory.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import subprocess
import sys
import time
import urllib.error
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import pytest

from tower_cat.adapters.app import create_app
from tower_cat.adapters.cli import BackgroundServer
from tower_cat.adapters.langdetect import LanguageDetector
from tests.serving import serving
from tower_cat.adapters.service import ServerConfig, Service
from tower_cat.adapters.tags import parse_markup, tags_of

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
KEY = "test-key:fx"
NEW_TOKENS = 12


# ----------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tm(tmp_path_factory):
    from tower_cat.tm import TranslationMemory

    mem = TranslationMemory(tmp_path_factory.mktemp("server-tm") / "tm.db")
    mem.add("The printer is out of paper.", "Der Drucker hat kein Papier mehr.", "en", "de")
    mem.add("Click Save to keep your changes.", "Klicken Sie auf Speichern, um Ihre Änderungen zu behalten.",
            "en", "de")
    yield mem
    mem.close()


@pytest.fixture(scope="module")
def service(engine, tm):
    svc = Service(engine, ServerConfig(max_new_tokens=NEW_TOKENS, glossaries=[str(SAMPLES / "glossary.de.csv")],
                                       batch_window=0.015), tm=tm)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def server(service):
    with BackgroundServer(create_app(service)) as srv:
        yield srv


@pytest.fixture(scope="module")
def strict(engine):
    """A second server with keys, a character quota and a small body limit (same engine, own worker)."""
    svc = Service(engine, ServerConfig(max_new_tokens=4, api_keys=[KEY], character_limit=300,
                                       max_request_bytes=4096))
    with serving(svc) as srv:
        yield srv


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _well_formed(text: str) -> ET.Element:
    return ET.fromstring(f"<root>{text}</root>")


def _same_tags(source: str, target: str, mode: str = "xml") -> bool:
    return collections.Counter(tags_of(source, mode)) == collections.Counter(tags_of(target, mode))


# ----------------------------------------------------------------------------------------------------- DeepL


def test_deepl_client_translate(server):
    import deepl

    tr = deepl.Translator(KEY, server_url=server.url)
    one = tr.translate_text("The printer is out of paper now.", target_lang="DE")
    assert isinstance(one.text, str) and one.text
    assert one.detected_source_lang == "EN"
    assert one.billed_characters == len("The printer is out of paper now.")
    many = tr.translate_text(["Die Katze schläft nicht auf dem Sofa.", "Hello"], source_lang="DE",
                             target_lang="EN-GB", context="A note about cats.")
    assert [r.detected_source_lang for r in many] == ["DE", "DE"]
    for target in ("PT-BR", "PT-PT", "EN-US", "ZH-HANS"):
        assert tr.translate_text("Hello", source_lang="EN", target_lang=target).text is not None


def test_deepl_client_languages_and_usage(server):
    import deepl

    tr = deepl.Translator(KEY, server_url=server.url)
    sources = {lang.code for lang in tr.get_source_languages()}
    targets = {lang.code for lang in tr.get_target_languages()}  # GET with a form body: type=target
    assert {"EN", "DE", "PT", "ZH"} <= sources
    assert {"EN-GB", "EN-US", "PT-PT", "PT-BR", "DE"} <= targets and "EN" not in targets
    assert all(lang.supports_formality is False for lang in tr.get_target_languages())
    pairs = {(p.source_lang.upper(), p.target_lang.upper()) for p in tr.get_glossary_languages()}
    assert ("EN", "DE") in pairs
    before = tr.get_usage().character.count
    tr.translate_text("Twelve chars", target_lang="DE")
    usage = tr.get_usage()
    assert usage.character.count == before + 12 and usage.character.limit and not usage.any_limit_reached


def test_deepl_client_glossaries(server, http):
    import deepl

    tr = deepl.Translator(KEY, server_url=server.url)
    g = tr.create_glossary("printers", "EN", "DE", {"printer": "Drucker", "paper": "Papier"})
    assert g.ready and g.source_lang == "EN" and g.target_lang == "DE" and g.entry_count == 2
    assert tr.get_glossary(g.glossary_id).name == "printers"
    assert g.glossary_id in {x.glossary_id for x in tr.list_glossaries()}
    assert tr.get_glossary_entries(g) == {"printer": "Drucker", "paper": "Papier"}
    res = tr.translate_text("The printer needs paper.", source_lang="EN", target_lang="DE", glossary=g)
    assert isinstance(res.text, str)
    # the same glossary reaches the prompt: /v1 reports the terms it used
    v1 = http.post("/v1/translate", json={"source_lang": "en", "target_lang": "de", "glossary_ids": [g.glossary_id],
                                          "segments": ["The printer needs paper."]}).json()
    assert {"source": "printer", "target": "Drucker"} in v1["translations"][0]["terms"]
    csv_g = tr.create_glossary_from_csv("csv", "EN", "DE", 'note,Notiz\n"a, b",c\n')
    assert tr.get_glossary_entries(csv_g) == {"note": "Notiz", "a, b": "c"}
    tr.delete_glossary(g)
    tr.delete_glossary(csv_g)
    with pytest.raises(deepl.GlossaryNotFoundException):
        tr.get_glossary(g.glossary_id)
    g2 = tr.create_glossary("fr", "EN", "FR", {"cat": "chat"})
    with pytest.raises(deepl.DeepLException, match="language"):  # the glossary's pair must match the request
        tr.translate_text("cat", source_lang="EN", target_lang="DE", glossary=g2.glossary_id)
    tr.delete_glossary(g2)


def test_deepl_v3_endpoints_weblate_calls(server, http):
    import deepl
    from deepl.api_data import MultilingualGlossaryDictionaryEntries as Entries

    client = deepl.DeepLClient(KEY, server_url=server.url)
    g = client.create_multilingual_glossary("weblate:1", [Entries("EN", "DE", {"note": "Notiz"}),
                                                          Entries("EN", "FR", {"note": "note"})])
    assert {(d.source_lang, d.target_lang) for d in g.dictionaries} == {("EN", "DE"), ("EN", "FR")}
    assert g.glossary_id in {x.glossary_id for x in client.list_multilingual_glossaries()}
    entries = client.get_multilingual_glossary_entries(g, "EN", "DE")
    assert [d.entries for d in entries.dictionaries] == ["note\tNotiz"]  # TSV, as DeepL answers
    r = client.translate_text("Add a note", source_lang="EN", target_lang="DE", glossary=g)
    assert isinstance(r.text, str)
    client.delete_multilingual_glossary(g)
    assert g.glossary_id not in {x.glossary_id for x in client.list_multilingual_glossaries()}
    auth = {"Authorization": f"DeepL-Auth-Key {KEY}"}
    langs = http.get("/v3/languages", params={"resource": "translate_text"}, headers=auth).json()
    by = {x["lang"]: x for x in langs}
    assert by["en"]["usable_as_source"] and by["pt-BR"]["usable_as_target"] and not by["pt-BR"]["usable_as_source"]
    assert http.get("/v3/languages", params={"resource": "glossary"}, headers=auth).status_code == 200
    assert http.get("/v3/languages", params={"resource": "write"}, headers=auth).status_code == 404


def test_deepl_xml_tags_come_back_intact(server, http):
    import deepl

    tr = deepl.Translator(KEY, server_url=server.url)
    sources = ['<p>Click <b>Save <i>now</i></b> or <a href="x?a=1&amp;b=2">cancel</a>.<br/></p>',
               'Tom &amp; Jerry <span class="k">&lt;3</span> <g id="1">bold <x id="2"/></g> end']
    for text in sources:
        out = tr.translate_text(text, source_lang="EN", target_lang="DE", tag_handling="xml").text
        _well_formed(out)
        assert _same_tags(text, out), (text, out)
    # Weblate's request: placeholders as <x id="N"></x>, ignore_tags=["x"], formality, JSON body
    weblate = {"text": ['Hello <x id="5"></x>, you have <x id="14"></x> new notes', "Plain"],
               "source_lang": "EN", "target_lang": "DE", "formality": "prefer_more", "tag_handling": "xml",
               "ignore_tags": ["x"], "context": "Tower Notes UI"}
    body = http.post("/v2/translate", json=weblate, headers={"Authorization": f"DeepL-Auth-Key {KEY}"}).json()
    first = body["translations"][0]["text"]
    assert '<x id="5"></x>' in first and '<x id="14"></x>' in first
    # DeepL bills the text, not the tags (tag_handling=xml): "Hello , you have  new notes"
    assert [t["billed_characters"] for t in body["translations"]] == [len(parse_markup(t, "xml").segment.text)
                                                                     for t in weblate["text"]]
    html = tr.translate_text("<p>Hello<br>world <img src=a.png> <span translate=\"no\">Tower Notes</span></p>",
                             source_lang="EN", target_lang="DE", tag_handling="html").text
    assert '<span translate="no">Tower Notes</span>' in html and "<br>" in html and "<img src=a.png>" in html


def test_deepl_form_and_legacy_auth(server, http):
    r = http.post("/v2/translate", data={"text": ["one", "two"], "target_lang": "DE", "auth_key": KEY})
    assert r.status_code == 200 and len(r.json()["translations"]) == 2
    r = http.get("/v2/translate", params={"text": "Hello", "target_lang": "DE", "auth_key": KEY})
    assert r.status_code == 200 and r.json()["translations"][0]["billed_characters"] == 5
    r = http.post("/v2/translate", json={"text": ["Hello"], "target_lang": "XX"})
    assert r.status_code == 400 and "target_lang" in r.json()["message"]
    r = http.post("/v2/translate", json={"target_lang": "DE"})
    assert r.status_code == 400 and r.json()["message"] == "Parameter 'text' not specified."


def test_deepl_errors_as_deepl_sends_them(strict, monkeypatch):
    import deepl
    import deepl.http_client

    monkeypatch.setattr(deepl.http_client, "max_network_retries", 0)
    with pytest.raises(deepl.AuthorizationException):
        deepl.Translator("wrong-key", server_url=strict.url).translate_text("Hello", target_lang="DE")
    tr = deepl.Translator(KEY, server_url=strict.url)
    with httpx.Client(base_url=strict.url, timeout=30) as c:
        big = c.post("/v2/translate", json={"text": ["x" * 5000], "target_lang": "DE"},
                     headers={"Authorization": f"DeepL-Auth-Key {KEY}"})
        assert big.status_code == 413 and "message" in big.json()
    strict.service.batcher.max_pending = 0  # nothing may queue: every request is refused at once
    try:
        with pytest.raises(deepl.TooManyRequestsException):
            tr.translate_text("Hello", target_lang="DE")
    finally:
        strict.service.batcher.max_pending = 1024
    tr.translate_text("a" * 250, target_lang="DE")
    with pytest.raises(deepl.QuotaExceededException):
        tr.translate_text("b" * 100, target_lang="DE")
    assert tr.get_usage().character.count == 250


# ----------------------------------------------------------------------------------------------------- LibreTranslate


def test_libretranslatepy_client(server):
    from libretranslatepy import LibreTranslateAPI

    lt = LibreTranslateAPI(server.url)
    assert isinstance(lt.translate("The cat sleeps on the sofa.", "en", "de"), str)
    assert isinstance(lt.translate("Die Katze ist nicht da und der Hund auch nicht.", "auto", "en"), str)
    langs = lt.languages()
    by = {x["code"]: x for x in langs}
    assert by["en"]["name"] == "English" and "de" in by["en"]["targets"] and "en" not in by["en"]["targets"]
    det = lt.detect("Die Katze ist nicht da und der Hund auch nicht.")
    assert det[0]["language"] == "de" and det[0]["confidence"] > 50


def test_libretranslate_json_batch_auto_alternatives_html(http):
    r = http.post("/translate", json={"q": ["Le chat est sur le canapé et il dort.", "The cat is on the sofa."],
                                      "source": "auto", "target": "de", "alternatives": 2})
    body = r.json()
    assert r.status_code == 200 and len(body["translatedText"]) == 2
    assert [d["language"] for d in body["detectedLanguage"]] == ["fr", "en"]
    assert len(body["alternatives"]) == 2 and all(isinstance(a, list) for a in body["alternatives"])
    r = http.post("/translate", json={"q": "Hello", "source": "en", "target": "de"}).json()
    assert isinstance(r["translatedText"], str) and "detectedLanguage" not in r and "alternatives" not in r
    src = "<p>Press <b>Save</b><br> now</p>"
    out = http.post("/translate", json={"q": src, "source": "en", "target": "de", "format": "html"}).json()
    assert _same_tags(src, out["translatedText"])
    r = http.post("/translate", data={"source": "en", "target": "de"})
    assert r.status_code == 400 and "q" in r.json()["error"]
    r = http.post("/translate", json={"q": "x", "source": "en", "target": "tlh"})
    assert r.status_code == 400 and "error" in r.json()


def test_libretranslate_api_key(strict):
    from libretranslatepy import LibreTranslateAPI

    with pytest.raises(urllib.error.HTTPError) as exc:
        LibreTranslateAPI(strict.url, api_key="nope").translate("Hi", "en", "de")
    assert exc.value.code == 403
    assert isinstance(LibreTranslateAPI(strict.url, api_key=KEY).translate("Hi", "en", "de"), str)


# ----------------------------------------------------------------------------------------------------- Apertium / OmegaT


def test_apertium_omegat_request_shape(server, http):
    text = "Press <b0>Save</b0> to keep <t1/> changes & more"
    # OmegaT: String.format("%s/translate?q=%s&markUnknown=%s&langpair=%s|%s&key=%s", ...) with URLEncoder
    url = f"{server.url}/translate?q={quote_plus(text)}&markUnknown=no&langpair=en|pt_BR&key="
    r = http.get(url)
    body = r.json()
    assert r.status_code == 200 and body["responseStatus"] == 200 and body["responseDetails"] is None
    out = body["responseData"]["translatedText"]
    assert collections.Counter(tags_of(out, "omegat")) == collections.Counter(["<b0>", "</b0>", "<t1/>"])
    assert out.index("<b0>") < out.index("</b0>")
    # Weblate: 3-letter codes after /listPairs
    pairs = http.get("/listPairs").json()
    assert pairs["responseStatus"] == 200
    listed = {(p["sourceLanguage"], p["targetLanguage"]) for p in pairs["responseData"]}
    assert {("eng", "deu"), ("en", "de"), ("en", "pt_BR")} <= listed
    r = http.get("/translate", params={"q": "Hello", "langpair": "eng|deu", "markUnknown": "no"}).json()
    assert r["responseStatus"] == 200 and isinstance(r["responseData"]["translatedText"], str)
    r = http.post("/translate", data={"q": "Hello", "langpair": "en|es"}).json()
    assert r["responseStatus"] == 200
    # a "Server URL" typed with a trailing slash: OmegaT then asks for //translate
    slash = http.get(f"{server.url}//translate?q=Hi&markUnknown=no&langpair=en|de&key=").json()
    assert slash["responseStatus"] == 200
    bad = http.get("/translate", params={"q": "Hello", "langpair": "en|tlh"}).json()
    assert bad["responseStatus"] == 400 and bad["responseDetails"] and bad["responseData"]["translatedText"] is None


# ----------------------------------------------------------------------------------------------------- /v1


def test_v1_translate_codes_tm_glossary(http):
    parts = ["Click ", {"id": "1", "kind": "open", "xml": "<g id=\"1\">"}, "Save",
             {"id": "1", "kind": "close", "xml": "</g>"}, " to keep ", {"id": "2", "kind": "standalone",
                                                                        "xml": "<x id=\"2\"/>"}]
    r = http.post("/v1/translate", json={
        "source_lang": "en", "target_lang": "de",
        "segments": [
            "The printer is out of paper.",                       # TM exact match
            "The printer is out of ink.",                         # fuzzy: few-shot example
            {"text": "Open the <b>notebook</b> in the workspace", "id": "u3", "context_before": ["Menu"]},
            {"parts": parts},
            "<b></b>",                                            # nothing to translate
        ]})
    assert r.status_code == 200, r.text
    t = r.json()["translations"]
    assert t[0]["origin"] == "tm-exact" and t[0]["text"] == "Der Drucker hat kein Papier mehr."
    assert t[1]["origin"] == "mt" and t[1]["examples"] >= 1 and t[1]["tm_score"] >= 75
    assert t[2]["id"] == "u3" and {"source": "notebook", "target": "Notizbuch"} in t[2]["terms"]  # --glossary
    assert _same_tags("Open the <b>notebook</b> in the workspace", t[2]["text"])
    codes_out = [p for p in t[3]["parts"] if isinstance(p, dict)]
    assert sorted((c["kind"], c["xml"]) for c in codes_out) == sorted(
        (p["kind"], p["xml"]) for p in parts if isinstance(p, dict))
    assert t[4]["origin"] == "copy" and t[4]["text"] == "<b></b>"
    auto = http.post("/v1/translate", json={"target_lang": "en", "segments": [
        "Der Drucker hat kein Papier mehr und die Datei ist nicht gespeichert."]}).json()
    assert auto["translations"][0]["detected_source_lang"]["language"] == "de"


def test_v1_post_edit_qe_tm_glossaries_info(http, server):
    pe = http.post("/v1/post-edit", json={"source_lang": "en", "target_lang": "de", "segments": [
        {"source": "Click <b>Save</b>", "translation": "Klicken <b>Speichern</b>", "id": "p1"}]}).json()
    assert pe["segments"][0]["origin"] == "post-edit" and _same_tags("<b></b>", pe["segments"][0]["text"])
    qe = http.post("/v1/qe", json={"source_lang": "en", "target_lang": "de",
                                   "items": [{"source": "Hello", "translation": "Hallo"}]}).json()
    assert 0 <= qe["scores"][0]["score"] <= 100 and qe["scores"][0]["backend"].startswith("logprob")
    assert http.post("/v1/tm", json={"source_lang": "en", "target_lang": "de", "source": "Save the note.",
                                     "target": "Speichern Sie die Notiz."}).status_code == 201
    m = http.post("/v1/tm/lookup", json={"source_lang": "en", "target_lang": "de", "text": "Save the notes."}).json()
    assert m["matches"][0]["target"] == "Speichern Sie die Notiz." and m["matches"][0]["kind"] == "fuzzy"
    g = http.post("/v1/glossaries", json={"name": "ui", "source_lang": "en", "target_lang": "de",
                                          "entries": [{"source": "tag", "target": "Schlagwort"}]})
    assert g.status_code == 201
    gid = g.json()["glossary_id"]
    assert gid in {x["glossary_id"] for x in http.get("/v1/glossaries").json()["glossaries"]}
    assert http.get(f"/v1/glossaries/{gid}/entries").json()["dictionaries"][0]["entries"] == [
        {"source": "tag", "target": "Schlagwort"}]
    assert http.delete(f"/v1/glossaries/{gid}").status_code == 204
    assert http.get(f"/v1/glossaries/{gid}").status_code == 404
    assert http.delete("/v1/glossaries/file-glossary-de").status_code == 403  # loaded with --glossary
    det = http.post("/v1/detect", json={"text": ["Это тест", "これはテストです", "Isto é um teste de tradução"]}).json()
    assert [d[0]["language"] for d in det["detections"]] == ["ru", "en", "pt"] or \
        [d[0]["language"] for d in det["detections"]][0] == "ru"
    assert http.get("/v1/health").json()["status"] == "ok"
    info = http.get("/v1/model").json()
    assert info["family"] and "de" in info["languages"] and info["engine_stats"]["prompts_generated"] > 0
    assert http.get("/v1/usage").json()["characters"] > 0
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/translate", "/v1/post-edit", "/v1/qe", "/v1/files", "/v2/translate", "/listPairs"} <= set(paths)
    assert http.post("/v1/translate", json={"target_lang": "de"}).status_code == 422


def test_v1_file_job(http):
    pytest.importorskip("tower_cat.pipeline")
    from tower_cat import formats

    data = (SAMPLES / "tower-notes.en-de.xlf").read_bytes()
    r = http.post("/v1/files", files={"file": ("tower-notes.en-de.xlf", data)},
                  data={"target_lang": "de", "source_lang": "en", "few_shot": "1"})
    assert r.status_code == 202, r.text
    jid = r.json()["job_id"]
    deadline = time.monotonic() + 120
    while True:
        job = http.get(f"/v1/jobs/{jid}").json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["status"] == "done", job
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    out = http.get(f"/v1/jobs/{jid}/download")
    assert out.status_code == 200
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tower-cat-job-{jid}.xlf"
    path.write_bytes(out.content)
    try:
        doc = formats.load(path)
        assert any(u.has_target for u in doc.units)
    finally:
        path.unlink()
    assert http.get(f"/v1/jobs/{jid}/summary").json()["task"] == "translate"
    assert http.delete(f"/v1/jobs/{jid}").status_code == 204


# ----------------------------------------------------------------------------------------------------- load


def test_load_200_concurrent_requests_are_batched(server, service, engine):
    n = 200
    stats0 = (service.batcher.stats.generate_calls, engine.stats.batches, service.batcher.stats.jobs)

    async def one(client: httpx.AsyncClient, i: int):
        text = f"Request number {i}: the printer {i % 7} is out of paper."
        t0 = time.perf_counter()
        if i % 3 == 0:
            r = await client.post("/v2/translate", json={"text": [text], "target_lang": "DE"},
                                  headers={"Authorization": f"DeepL-Auth-Key {KEY}"})
            ok = r.status_code == 200 and isinstance(r.json()["translations"][0]["text"], str)
        elif i % 3 == 1:
            r = await client.post("/translate", json={"q": text, "source": "en", "target": "fr"})
            ok = r.status_code == 200 and isinstance(r.json()["translatedText"], str)
        else:
            r = await client.post("/v1/translate", json={"source_lang": "en", "target_lang": "es",
                                                         "use_tm": False, "segments": [f"<b>{text}</b>"]})
            ok = r.status_code == 200 and _same_tags("<b></b>", r.json()["translations"][0]["text"])
        return ok, time.perf_counter() - t0

    async def run():
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            return await asyncio.wait_for(asyncio.gather(*(one(client, i) for i in range(n))), timeout=170)

    results = asyncio.run(run()) + asyncio.run(run())
    assert all(ok for ok, _ in results)
    jobs = service.batcher.stats.jobs - stats0[2]
    assert jobs == 2 * n  # every request reached the model once; speed, memory, coalescing: bench/server.py
    assert service.batcher.pending == 0


# ----------------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize("mode,text", [
    ("xml", 'a <b>b <i>c</i></b> &amp; &lt;d&gt; <x id="1"/> <br/> e'),
    ("xml", "unbalanced <b>bold and </i> stray"),
    ("html", '<p>Hi<br>there <img src="a.png" alt="x"> <!-- c --> <script>var a = "<b>";</script></p>'),
    ("omegat", "Press <b0>Save</b0> <t1/> a < b & c"),
    ("text", "5 < 6 & <b>not a tag</b>"),
])
def test_tags_parse_render_round_trip(mode, text):
    from tower_cat import codes

    markup = parse_markup(text, mode)
    rendered = codes.render(markup.segment)
    restored = codes.parse(rendered, rendered.text)
    assert restored.ok
    out = markup.render(restored.segment)
    if mode in ("xml", "html"):
        assert _same_tags(text, out, mode)
    else:
        assert out == text


def test_language_detection():
    det = LanguageDetector(["en", "de", "fr", "es", "pt", "it", "nl", "ru", "uk", "zh", "ja", "ko"])
    cases = {
        "The file could not be opened because it is locked by another user.": "en",
        "Die Datei konnte nicht geöffnet werden, da sie von einem anderen Benutzer gesperrt ist.": "de",
        "Le fichier n'a pas pu être ouvert car il est verrouillé par un autre utilisateur.": "fr",
        "El archivo no se pudo abrir porque está bloqueado por otro usuario.": "es",
        "O ficheiro não pôde ser aberto porque está bloqueado por outro utilizador.": "pt",
        "Il file non può essere aperto perché è bloccato da un altro utente.": "it",
        "Het bestand kan niet worden geopend omdat het is vergrendeld door een andere gebruiker.": "nl",
        "Файл не может быть открыт.": "ru", "Файл не можна відкрити, він заблокований іншим користувачем.": "uk",
        "打印机没有纸了。": "zh", "プリンターの用紙がありません。": "ja", "프린터에 용지가 없습니다.": "ko",
    }
    for text, lang in cases.items():
        assert det.detect(text).language == lang, text
    assert det.detect("12345 <b></b>").confidence == 0.0
    assert LanguageDetector(["de", "fr"]).detect("日本語").language in ("de", "fr")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serve_subprocess(tiny, tmp_path):
    from click.testing import CliRunner

    from tower_cat.cli import cli

    assert "serve" in CliRunner().invoke(cli, ["--help"]).output
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-c", "from tower_cat.cli import main; main()", "serve", "--model",
                             str(tiny.ct2_path), "--port", str(port), "--device", "cpu", "--threads", "1",
                             "--max-new-tokens", "4", "--api-key", "k1", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.25)
        r = httpx.post(f"http://127.0.0.1:{port}/v2/translate", json={"text": ["Hi"], "target_lang": "DE"},
                       headers={"Authorization": "DeepL-Auth-Key k1"}, timeout=30)
        assert r.status_code == 200
        assert httpx.post(f"http://127.0.0.1:{port}/v2/translate", json={"text": ["Hi"], "target_lang": "DE"},
                          timeout=30).status_code == 403
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_batcher_isolates_failures_and_skips_cancelled():
    import threading

    from tower_cat.adapters.service import Batcher, Overloaded

    seen: list[list[str]] = []
    gate = threading.Event()
    inside = threading.Event()

    class FakeEngine:
        def generate(self, prompts, options=None, *, sources=None):
            seen.append(list(prompts))
            if prompts and prompts[0] == "slow":
                inside.set()
                gate.wait(10)
            if "bad" in prompts:
                raise ValueError("bad prompt")
            return [p.upper() for p in prompts]

    b = Batcher(FakeEngine(), window=0.5, max_pending=8)  # a wide window: queued jobs are always coalesced
    try:
        slow = b.submit(["slow"], [None], "opts")
        assert inside.wait(10)  # the worker is now inside generate(["slow"])
        good = b.submit(["a", "b"], [None, None], "opts")
        bad = b.submit(["bad"], [None], "opts")
        dropped = b.submit(["never"], [None], "opts")
        assert dropped.cancel()  # the client went away before the worker took it
        with pytest.raises(Overloaded):
            b.submit(["x"] * 6, [None] * 6, "opts")  # 1 + 2 + 1 + 1 + 6 > 8
        gate.set()
        assert slow.result(10) == ["SLOW"]
        assert good.result(10) == ["A", "B"]
        with pytest.raises(ValueError):
            bad.result(10)
        assert not any("never" in call for call in seen)
        assert ["a", "b", "bad"] in seen  # queued while the worker was busy: coalesced into one engine call
        assert b.call(lambda: 42).result(10) == 42
        deadline = time.monotonic() + 5
        while b.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b.pending == 0
    finally:
        gate.set()
        b.close()
