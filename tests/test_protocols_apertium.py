"""Apertium APy additions: JSONP ``callback`` on every answer (errors too), ``/listLanguageNames``,
``/identifyLang`` — the calls Apertium's web front-end and APy-based plugins make."""

from __future__ import annotations

import json
import re

from tests.protocol_fixtures import TM_SOURCE, TM_TARGET, engine, http, server, service, tiny, tm  # noqa: F401


def _jsonp(r, callback: str):
    assert r.headers["content-type"].startswith("application/javascript")
    m = re.fullmatch(re.escape(callback) + r"\((.*)\);", r.text, re.S)
    assert m, r.text
    return json.loads(m.group(1))


def test_translate_jsonp(http):
    r = http.get("/translate", params={"q": TM_SOURCE, "langpair": "en|de", "callback": "cb"})
    body = _jsonp(r, "cb")
    assert body["responseStatus"] == 200 and body["responseData"]["translatedText"] == TM_TARGET
    err = _jsonp(http.get("/translate", params={"q": "x", "langpair": "en|tlh", "callback": "cb"}), "cb")
    assert err["responseStatus"] == 400 and err["responseDetails"]
    pairs = _jsonp(http.get("/listPairs", params={"callback": "jQuery_1.done"}), "jQuery_1.done")
    assert pairs["responseStatus"] == 200 and {"sourceLanguage": "eng", "targetLanguage": "deu"} in pairs["responseData"]
    # a callback that is not a plain identifier is refused (no script injection through JSONP)
    bad = http.get("/listPairs", params={"callback": "alert(1)//"})
    assert bad.headers["content-type"].startswith("application/json") and bad.json()["responseStatus"] == 400


def test_list_language_names_and_identify_lang(http):
    names = http.get("/listLanguageNames", params={"locale": "eng"}).json()
    assert names["de"] == "German" and names["deu"] == "German" and names["pt_BR"].startswith("Portuguese")
    some = http.get("/listLanguageNames", params={"locale": "eng", "languages": "deu fra"}).json()
    assert some == {"deu": "German", "fra": "French"}
    guess = http.get("/identifyLang", params={"q": "Die Katze schläft nicht auf dem Sofa, sie ist im Garten."})
    scores = guess.json()
    assert max(scores, key=scores.get) == "deu" and all(0 <= v <= 1 for v in scores.values())
    assert _jsonp(http.get("/identifyLang", params={"q": "The cat is on the sofa.", "callback": "f"}), "f")
