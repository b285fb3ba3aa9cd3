"""The ModernMT door, driven by the official `modernmt` client (POST + X-HTTP-Method-Override, base URL set on
its private attribute, as it has no parameter for it) and by Weblate's real `GET /translate` with httpx."""

from __future__ import annotations

import pytest

from tests.protocol_fixtures import KEY, TM_SOURCE, TM_TARGET, engine, http, keyed, server, service, tiny, tm  # noqa: F401

modernmt = pytest.importorskip("modernmt")


def _client(url: str, key: str = "any") -> "modernmt.ModernMT":
    mmt = modernmt.ModernMT(key)
    mmt._ModernMT__base_url = url  # the client has no base-URL parameter
    return mmt


def test_modernmt_client_translate_single_and_list(server):
    mmt = _client(server.url)
    one = mmt.translate("en", "de", TM_SOURCE, hints=[1, 2], context_vector="1:0.5,2:0.25")
    assert one.translation == TM_TARGET  # exact TM hit: through the translation core
    assert one.characters == len(TM_SOURCE) and one.billedCharacters == len(TM_SOURCE)
    many = mmt.translate(None, "de", ["Die Katze schläft nicht auf dem Sofa.", TM_SOURCE],
                         options={"alt_translations": 2})
    assert [t.detectedLanguage for t in many] == ["de", "en"]
    assert many[1].translation == TM_TARGET and all(isinstance(t.altTranslations, list) for t in many)
    xml = mmt.translate("en", "de", "Press <b>Save</b> to keep <x id=\"1\"/> changes",
                        options={"format": "text/xml"})
    assert xml.translation.count("<b>") == 1 and xml.translation.count('<x id="1"/>') == 1
    assert xml.billedCharacters == len("Press Save to keep  changes")  # tags are not billed


def test_modernmt_client_languages_detect_and_errors(server, keyed):
    mmt = _client(server.url)
    assert {"en", "de", "fr"} <= set(mmt.list_supported_languages())
    assert mmt.detect_language("Die Katze schläft nicht auf dem Sofa.").detectedLanguage == "de"
    with pytest.raises(modernmt.ModernMTException) as exc:
        mmt.translate("en", "tlh", "Hello")
    assert exc.value.status == 400 and exc.value.type == "UnsupportedLanguageException"
    with pytest.raises(modernmt.ModernMTException) as exc:
        mmt.translate("en", "de", "Hello", context_vector="not-a-vector")
    assert exc.value.type == "ParameterParsingException"
    with pytest.raises(modernmt.ModernMTException) as exc:
        _client(keyed.url, "wrong").translate("en", "de", "Hello")
    assert exc.value.status == 401 and exc.value.type == "AuthenticationException"
    assert isinstance(_client(keyed.url, KEY).translate("en", "de", "Hi").translation, str)


def test_weblate_real_get_and_collisions(http):
    # Weblate: real GET with the key header
    r = http.get("/translate", params={"q": TM_SOURCE, "source": "en", "target": "de", "context_vector": "7:0.5"},
                 headers={"MMT-ApiKey": "k", "MMT-Platform": "Weblate"})
    assert r.status_code == 200 and r.json()["status"] == 200 and r.json()["data"]["translation"] == TM_TARGET
    r = http.get("/translate/languages", headers={"MMT-ApiKey": "k"})
    assert r.json()["status"] == 200 and "de" in r.json()["data"]
    # the same path without ModernMT headers is LibreTranslate's, with LibreTranslate's shapes
    lt = http.post("/translate", json={"q": TM_SOURCE, "source": "en", "target": "de"})
    assert lt.json() == {"translatedText": TM_TARGET}
    # ModernMT errors stay ModernMT's even where LibreTranslate would complain about the same thing
    err = http.post("/translate", json={"source": "en", "target": "de"},
                    headers={"X-HTTP-Method-Override": "get"})
    assert err.status_code == 400 and err.json()["status"] == 400
    assert err.json()["error"]["type"] == "ParameterParsingException"
    bad = http.post("/translate", json={"q": "x", "target": "de"}, headers={"X-HTTP-Method-Override": "delete"})
    assert bad.status_code == 405 and bad.json()["error"]["type"] == "MethodNotAllowedException"
    # Apertium's langpair without ModernMT headers stays Apertium's
    apy = http.get("/translate", params={"q": "Hello", "langpair": "en|de"})
    assert apy.json()["responseStatus"] == 200
