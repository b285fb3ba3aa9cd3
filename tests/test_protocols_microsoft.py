"""The Microsoft Translator v3 door, driven by `azure-ai-translation-text` (endpoint override) and raw httpx.

Also the collisions: `/translate`, `/languages` and `/detect` are LibreTranslate's paths too; a request is
answered in Microsoft's shape only when it carries `api-version` or an `Ocp-Apim-*` header, and never otherwise.
"""

from __future__ import annotations

import pytest

from tests.protocol_fixtures import KEY, TM_SOURCE, TM_TARGET, engine, http, keyed, server, service, tiny, tm  # noqa: F401

pytest.importorskip("azure.ai.translation.text")
from azure.ai.translation.text import TextTranslationClient  # noqa: E402
from azure.core.credentials import AzureKeyCredential  # noqa: E402
from azure.core.exceptions import HttpResponseError  # noqa: E402

V3 = {"api-version": "3.0"}


def _client(url: str, key: str = "any") -> TextTranslationClient:
    return TextTranslationClient(endpoint=url, credential=AzureKeyCredential(key), retry_total=0)


def test_azure_client_translate_several_targets_and_detection(server):
    client = _client(server.url)
    out = client.translate(body=[TM_SOURCE, "Guten Morgen, wie geht es dir heute?"], to_language=["de", "fr"],
                           from_language="en")
    assert len(out) == 2
    assert [t.to for t in out[0].translations] == ["de", "fr"]
    assert out[0].translations[0].text == TM_TARGET  # through the translation core (exact TM hit)
    assert out[0].detected_language is None  # `from` was given
    auto = client.translate(body=["Die Katze schläft nicht auf dem Sofa, sie ist im Garten."], to_language=["en"])
    assert auto[0].detected_language.language == "de" and 0 < auto[0].detected_language.score <= 1
    html = client.translate(body=["<p>Press <b>Save</b> now<br></p>"], to_language=["de"], from_language="en",
                            text_type="html")[0].translations[0].text
    assert html.count("<b>") == 1 and html.count("</b>") == 1 and "<br>" in html


def test_azure_client_languages(server):
    langs = _client(server.url).get_supported_languages(scope="translation")
    assert {"en", "de", "fr"} <= set(langs.translation)
    assert langs.translation["de"].name == "German" and langs.translation["de"].native_name == "Deutsch"
    assert langs.translation["de"].dir == "ltr"


def test_detect_and_custom_domain_prefix(http):
    r = http.post("/detect", params=V3, json=[{"Text": "Die Katze schläft nicht auf dem Sofa."}])
    assert r.status_code == 200
    assert r.json()[0]["language"] == "de" and r.json()[0]["isTranslationSupported"] is True
    r = http.post("/translator/text/v3.0/translate", params={"to": "de", "from": "en"}, json=[{"Text": TM_SOURCE}])
    assert r.status_code == 200 and r.json()[0]["translations"][0] == {"text": TM_TARGET, "to": "de"}


def test_errors_in_microsoft_shape(http, keyed):
    r = http.post("/translate", params={**V3, "to": "tlh"}, json=[{"Text": "x"}])
    assert r.status_code == 400 and r.json()["error"]["code"] == 400036
    r = http.post("/translate", params={**V3, "to": "de", "from": "tlh"}, json=[{"Text": "x"}])
    assert r.json()["error"]["code"] == 400035
    r = http.post("/translate", params={**V3, "to": "de"}, content=b"not json",
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 400074
    r = http.post("/translate", params={"api-version": "2.0", "to": "de"}, json=[{"Text": "x"}])
    assert r.json()["error"]["code"] == 400021
    # the SDK surfaces Microsoft's code and message
    with pytest.raises(HttpResponseError) as exc:
        _client(keyed.url, "wrong").translate(body=["Hi"], to_language=["de"])
    assert exc.value.status_code == 401 and "401000" in str(exc.value)
    ok = _client(keyed.url, KEY).translate(body=["Hi"], to_language=["de"])
    assert isinstance(ok[0].translations[0].text, str)


def test_collisions_never_cross_shapes(http):
    """Each shared path answers the protocol the request speaks — success and error shapes alike."""
    # LibreTranslate: no api-version, no Ocp-Apim header
    lt = http.post("/translate", json={"q": TM_SOURCE, "source": "en", "target": "de"})
    assert lt.status_code == 200 and lt.json() == {"translatedText": TM_TARGET}
    lt_err = http.post("/translate", json={"source": "en", "target": "de"})
    assert lt_err.status_code == 400 and "error" in lt_err.json() and isinstance(lt_err.json()["error"], str)
    assert isinstance(http.get("/languages").json(), list)
    assert isinstance(http.post("/detect", data={"q": "Die Katze schläft."}).json(), list)
    # Microsoft by api-version
    ms = http.post("/translate", params={**V3, "to": "de", "from": "en"}, json=[{"Text": TM_SOURCE}])
    assert ms.json() == [{"translations": [{"text": TM_TARGET, "to": "de"}]}]
    assert isinstance(http.get("/languages", params=V3).json(), dict)
    # Microsoft by header alone: refused in Microsoft's shape (api-version is required), never LibreTranslate's
    hdr = http.post("/translate", params={"to": "de"}, json=[{"Text": "x"}],
                    headers={"Ocp-Apim-Subscription-Key": "k"})
    assert hdr.status_code == 400 and hdr.json()["error"]["code"] == 400021
    # a Microsoft body on a LibreTranslate request is LibreTranslate's error, not a crash or a Microsoft answer
    wrong = http.post("/translate", json=[{"Text": "x"}])
    assert wrong.status_code == 400 and isinstance(wrong.json()["error"], str)
    # GET /translate with api-version: Microsoft's 405, not LibreTranslate's "missing q"
    get = http.get("/translate", params={**V3, "to": "de"})
    assert get.status_code == 405 and get.json()["error"]["code"] == 405000
    # an unknown Microsoft operation under api-version: Microsoft's error shape
    other = http.post("/transliterate", params={**V3, "language": "ja"}, json=[{"Text": "x"}])
    assert other.status_code == 404 and "code" in other.json()["error"]


AZURE_2 = "2.0.0"  # speaks api-version=2026-06-06; the test extra pins 1.0.1 (v3), so this one runs apart
AZURE_2_SCRIPT = r"""
import json, sys
from azure.ai.translation.text import TextTranslationClient, __version__
from azure.core.credentials import AzureKeyCredential
url, text = sys.argv[1], sys.argv[2]
c = TextTranslationClient(endpoint=url, credential=AzureKeyCredential("k"))
r = c.translate(body=[text], to_language=["de", "fr"], from_language="en")
auto = c.translate(body=["Die Katze schläft nicht auf dem Sofa, sie ist im Garten."], to_language=["en"])
langs = c.get_supported_languages(scope="translation")
print(json.dumps({"version": __version__, "targets": [t.language for t in r[0].translations],
                  "de": r[0].translations[0].text, "chars": r[0].translations[0].source_characters,
                  "detected": auto[0].detected_language.language, "langs": sorted(langs.translation)}))
"""


@pytest.fixture(scope="session")
def azure_2(tmp_path_factory):
    """azure-ai-translation-text 2.x in its own folder (pip --target, no deps: azure-core is in the venv)."""
    import subprocess
    import sys
    from pathlib import Path

    target = Path(__file__).resolve().parents[1] / ".cache" / "pip-clients" / f"azure-ai-translation-text-{AZURE_2}"
    if not (target / "azure" / "ai" / "translation" / "text").is_dir():
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                               f"azure-ai-translation-text=={AZURE_2}"], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"pip could not fetch azure-ai-translation-text {AZURE_2}: {done.stderr.strip()[-300:]}")
    return target


def test_azure_client_2x_api_version_2026(server, azure_2):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(azure_2))
    done = subprocess.run([sys.executable, "-c", AZURE_2_SCRIPT, server.url, TM_SOURCE], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["version"].startswith("2.")
    assert out["targets"] == ["de", "fr"] and out["de"] == TM_TARGET and out["chars"] == len(TM_SOURCE)
    assert out["detected"] == "de" and {"de", "en", "fr"} <= set(out["langs"])
