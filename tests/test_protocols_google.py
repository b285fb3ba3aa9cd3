"""The Google Cloud Translation v2 door, driven by `google-cloud-translate`'s `translate_v2.Client` with
`client_options={"api_endpoint": …}` and anonymous credentials, and by httpx for the GET/key forms."""

from __future__ import annotations

import pytest

from tests.protocol_fixtures import KEY, TM_SOURCE, TM_TARGET, engine, http, keyed, server, service, tiny, tm  # noqa: F401

translate_v2 = pytest.importorskip("google.cloud.translate_v2")
from google.api_core import exceptions as gexc  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402


def _client(url: str) -> "translate_v2.Client":
    return translate_v2.Client(client_options={"api_endpoint": url}, credentials=AnonymousCredentials())


def test_google_client_translate(server):
    client = _client(server.url)
    one = client.translate(TM_SOURCE, target_language="de", source_language="en", format_="text")
    assert one["translatedText"] == TM_TARGET and "detectedSourceLanguage" not in one
    many = client.translate(["Die Katze schläft nicht auf dem Sofa.", TM_SOURCE], target_language="de")
    assert [t["detectedSourceLanguage"] for t in many] == ["de", "en"] and many[1]["translatedText"] == TM_TARGET
    # Google's default format is html: tags kept, entities decoded for the model and written back escaped
    html = client.translate("Tom &amp; Jerry <b>save</b> the day", target_language="de", source_language="en")
    out = html["translatedText"]
    assert out.count("<b>") == 1 and out.count("</b>") == 1 and "&" not in out.replace("&amp;", "")


def test_google_client_languages_and_detect(server):
    client = _client(server.url)
    langs = client.get_languages()  # the client asks with target=en: names included
    by = {x["language"]: x for x in langs}
    assert by["de"]["name"] == "German" and "en" in by
    det = client.detect_language(["Die Katze schläft nicht auf dem Sofa.", "The cat sleeps on the sofa."])
    assert [d["language"] for d in det] == ["de", "en"] and all(0 < d["confidence"] <= 1 for d in det)


def test_get_with_key_and_errors(http, keyed):
    r = http.get("/language/translate/v2", params=[("q", TM_SOURCE), ("q", "Hi"), ("target", "de"),
                                                     ("source", "en"), ("key", "anything")])
    assert r.status_code == 200 and r.json()["data"]["translations"][0]["translatedText"] == TM_TARGET
    r = http.post("/language/translate/v2", json={"q": ["x"], "target": "tlh"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["code"] == 400 and err["status"] == "INVALID_ARGUMENT" and err["errors"]
    with pytest.raises(gexc.BadRequest):
        _client(keyed.url).translate("Hi", target_language="de")  # no key on a keyed server
    r = http.post(keyed.url + "/language/translate/v2", params={"key": KEY}, json={"q": ["Hi"], "target": "de"})
    assert r.status_code == 200
    r = http.post(keyed.url + "/language/translate/v2", params={"key": "wrong"}, json={"q": ["Hi"], "target": "de"})
    assert r.status_code == 400 and "API key not valid" in r.json()["error"]["message"]
