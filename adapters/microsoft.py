"""Microsoft Translator v3 compatibility: ``POST /translate``, ``GET /languages``, ``POST /detect``.

What the Azure SDK (``azure-ai-translation-text`` 1.x, ``api-version=3.0``) and the Microsoft Translator
connectors of CAT tools send, at the root (``https://api.cognitive.microsofttranslator.com`` style) or under
``/translator/text/v3.0`` (a custom-domain Azure endpoint):

* ``POST /translate?api-version=3.0&from=en&to=de&to=fr&textType=html`` with a JSON array ``[{"Text": …}]``
  (the SDK writes ``text``; both are read) → ``[{"translations": [{"text", "to"}, …]}]`` in input order, plus
  ``detectedLanguage {language, score}`` when ``from`` is absent. Several ``to`` are several translations of
  each text (each counted in usage, as Microsoft bills them). ``textType=html`` keeps every tag (``tags.py``).
* ``GET /languages?api-version=3.0&scope=translation`` → ``{"translation": {code: {name, nativeName, dir}}}``
  (no key needed, as at Microsoft); the ``transliteration`` and ``dictionary`` scopes are empty: not offered.
* ``POST /detect?api-version=3.0`` → ``[{"language", "score", "isTranslationSupported",
  "isTransliterationSupported"}]``.
* The key: ``Ocp-Apim-Subscription-Key`` (or ``Subscription-Key`` in the query, or ``Authorization: Bearer``).
* Errors: ``{"error": {"code": 400036, "message": …}}`` with Microsoft's codes (400021 api-version, 400035
  source, 400036 target, 400074 body, 400077 size, 401000 key, 403001 quota, 429000 busy).

The newer ``api-version=2026-06-06`` (what ``azure-ai-translation-text`` 2.x sends) is answered too: a body
``{"inputs": [{"text", "language"?, "textType"?, "targets": [{"language", …}]}]}`` (each input with its own
source, text type and targets) → ``{"value": [{"detectedLanguage"?, "translations": [{"language", "text",
"sourceCharacters"}]}]}``; target options such as ``tone``, ``gender``, ``deploymentName`` or
``referenceTextPairs`` are accepted and have no effect.

``/translate``, ``/languages`` and ``/detect`` are LibreTranslate's paths too: ``http.protocol_of`` hands a
request here only when it carries ``api-version`` or an ``Ocp-Apim-*`` header (or comes under the v3.0 prefix).
``category``, ``profanityAction``, ``includeAlignment``, ``includeSentenceLength``, ``suggestedFrom``,
``fromScript``/``toScript`` and ``allowFallback`` are accepted and have no effect.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import APIRouter, Request

from .http import MICROSOFT, MICROSOFT_PREFIX, ProtocolError, service_of
from .service import SegmentIn, Service, ServiceError, Unauthorized

MAX_ELEMENTS = 1000          # Microsoft: array elements per request
V3, V2026 = "3.0", "2026-06-06"
RTL = {"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "dv"}
NATIVE = {"en": "English", "de": "Deutsch", "es": "Español", "fr": "Français", "it": "Italiano", "ko": "한국어",
          "nl": "Nederlands", "ru": "Русский", "pt": "Português", "zh": "中文", "cs": "Čeština",
          "uk": "Українська", "hi": "हिन्दी", "is": "Íslenska", "ja": "日本語", "pl": "Polski", "sv": "Svenska",
          "hu": "Magyar", "ro": "Română", "da": "Dansk", "nb": "Norsk bokmål", "nn": "Norsk nynorsk",
          "fi": "Suomi", "pt-BR": "Português (Brasil)", "pt-PT": "Português (Portugal)",
          "zh-Hans": "中文 (简体)", "zh-Hant": "繁體中文 (繁體)", "en-GB": "English (UK)", "en-US": "English (US)"}


def _begin(request: Request, *, needs_key: bool = True) -> tuple[Service, str | None]:
    request.state.protocol = MICROSOFT
    service = service_of(request)
    if "api-version" not in request.query_params and not request.url.path.startswith(MICROSOFT_PREFIX):
        raise ProtocolError("The API version parameter is missing or invalid.", code=400021)
    version = request.query_params.get("api-version")
    if version is not None and version not in (V3, V2026):
        raise ProtocolError("The API version parameter is missing or invalid.", code=400021)
    if not needs_key:
        return service, None
    auth = request.headers.get("authorization", "")
    key = (request.headers.get("ocp-apim-subscription-key") or request.query_params.get("Subscription-Key")
           or (auth[7:].strip() if auth.startswith("Bearer ") else None))
    try:
        return service, service.check_key(key)
    except Unauthorized:
        raise ProtocolError("The request is not authorized because credentials are missing or invalid.",
                            status=401, code=401000) from None


async def _texts(request: Request) -> list[str]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise ProtocolError("The body of the request is not valid JSON.", code=400074) from None
    if not isinstance(body, list) or not body:
        raise ProtocolError("The body of the request must be a non-empty JSON array of {\"Text\": …} objects.",
                            code=400074)
    if len(body) > MAX_ELEMENTS:
        raise ProtocolError(f"The array of input text has too many elements (at most {MAX_ELEMENTS}).",
                            code=400072)
    texts = []
    for i, item in enumerate(body):
        text = None
        if isinstance(item, dict):
            text = next((v for k, v in item.items() if k.lower() == "text"), None)
        if not isinstance(text, str):
            raise ProtocolError(f"Element {i} of the input array has no string 'Text'.", code=400020)
        texts.append(text)
    return texts


def _language(service: Service, code, role: str, error: int) -> str:
    try:
        return service.resolve(str(code).strip(), role)
    except ServiceError:
        name = "target" if role == "target" else "source"
        raise ProtocolError(f"The {name} language is not valid: {code}", code=error) from None


async def _translate_2026(request: Request, service: Service, key: str | None):
    """``api-version=2026-06-06``: per-input source, text type and targets, answered under ``value``."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise ProtocolError("The body of the request is not valid JSON.", code=400074) from None
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("The body of the request must be {\"inputs\": [{\"text\", \"targets\": [...]}, ...]}.",
                            code=400074)
    if len(inputs) > MAX_ELEMENTS:
        raise ProtocolError(f"The array of input text has too many elements (at most {MAX_ELEMENTS}).",
                            code=400072)
    jobs = []  # (input index, target as asked, segment, resolved target)
    sources: list[str | None] = []
    for i, item in enumerate(inputs):
        text = item.get("text") if isinstance(item, dict) else None
        targets = item.get("targets") if isinstance(item, dict) else None
        if not isinstance(text, str):
            raise ProtocolError(f"inputs[{i}] has no string 'text'.", code=400020)
        if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
            raise ProtocolError(f"inputs[{i}] has no 'targets'.", code=400036)
        source = _language(service, item["language"], "source", 400035) if item.get("language") else None
        sources.append(source)
        text_type = str(item.get("textType") or "plain").lower()
        if text_type not in ("plain", "html"):
            raise ProtocolError("The TextType value is not valid.", code=400071)
        segment = SegmentIn.parse(text, "html" if text_type == "html" else "text")
        for t in targets:
            if not t.get("language"):
                raise ProtocolError(f"inputs[{i}]: a target has no 'language'.", code=400036)
            tgt = _language(service, t["language"], "target", 400036)
            jobs.append((i, t["language"], segment, tgt))
    try:  # every input and target read before any work starts
        outs = await asyncio.gather(*(service.translate([seg], sources[i], tgt, key=key)
                                      for i, _, seg, tgt in jobs))
    except ServiceError as exc:
        if exc.status == 413:
            raise ProtocolError(exc.message, code=400050) from None
        raise
    value: list[dict] = [{"translations": []} for _ in inputs]
    for (i, asked, segment, _), (out,) in zip(jobs, outs):
        if sources[i] is None and "detectedLanguage" not in value[i]:
            det = out.detected
            value[i] = {"detectedLanguage": {"language": det.language if det else out.source_lang,
                                             "score": round(min(max(det.confidence / 100, 0.0), 1.0), 2)
                                             if det else 1.0}, **value[i]}
        value[i]["translations"].append({"language": asked, "text": out.text,
                                         "sourceCharacters": len(segment.segment.text)})
    return {"value": value}


async def translate(request: Request):
    service, key = _begin(request)
    if request.query_params.get("api-version") == V2026:
        return await _translate_2026(request, service, key)
    query = request.query_params
    targets = [t for value in query.getlist("to") for t in value.split(",") if t.strip()]
    if not targets:
        raise ProtocolError("The target language is not valid.", code=400036)
    resolved = []
    for t in targets:
        try:
            resolved.append(service.resolve(t.strip(), "target"))
        except ServiceError:
            raise ProtocolError(f"The target language is not valid: {t}", code=400036) from None
    source = query.get("from") or None
    if source:
        try:
            source = service.resolve(source, "source")
        except ServiceError:
            raise ProtocolError(f"The source language is not valid: {source}", code=400035) from None
    text_type = (query.get("textType") or "plain").lower()
    if text_type not in ("plain", "html"):
        raise ProtocolError("The TextType value is not valid.", code=400071)
    mode = "html" if text_type == "html" else "text"
    texts = await _texts(request)
    items = [SegmentIn.parse(t, mode) for t in texts]
    try:
        per_target = await asyncio.gather(*(service.translate(items, source, tgt, key=key) for tgt in resolved))
    except ServiceError as exc:
        if exc.status == 413:
            raise ProtocolError(exc.message, code=400050) from None
        raise
    answer = []
    for i in range(len(texts)):
        item: dict = {}
        if not source:
            first = per_target[0][i]
            det = first.detected
            item["detectedLanguage"] = {"language": det.language if det else first.source_lang,
                                        "score": round(min(max(det.confidence / 100, 0.0), 1.0), 2) if det else 1.0}
        item["translations"] = [{"text": outs[i].text, "to": t} for outs, t in zip(per_target, targets)]
        answer.append(item)
    return answer


async def languages(request: Request):
    service, _ = _begin(request, needs_key=False)
    scopes = [s.strip().lower() for s in (request.query_params.get("scope") or
                                          "translation,transliteration,dictionary").split(",") if s.strip()]
    unknown = [s for s in scopes if s not in ("translation", "transliteration", "dictionary")]
    if unknown:
        raise ProtocolError(f"The value of the scope parameter is not valid: {', '.join(unknown)}", code=400001)
    out: dict = {}
    if "translation" in scopes:
        catalog = service.catalog
        out["translation"] = {code: {"name": catalog.name(code), "nativeName": NATIVE.get(code, catalog.name(code)),
                                     "dir": "rtl" if code.split("-")[0] in RTL else "ltr"}
                              for code in catalog.all_codes()}
        if request.query_params.get("api-version") == V2026:  # 2026: the models that serve each language
            model = Path(str(getattr(service.engine, "path", "tower-cat"))).name
            for entry in out["translation"].values():
                entry["models"] = [model]
            out["models"] = [model]
    for scope in ("transliteration", "dictionary"):
        if scope in scopes:
            out[scope] = {}  # not offered by this server
    return out


async def detect(request: Request):
    service, _ = _begin(request)
    texts = await _texts(request)
    out = []
    for text in texts:
        d = service.detect(text)
        out.append({"language": d.language, "score": round(min(max(d.confidence / 100, 0.0), 1.0), 2),
                    "isTranslationSupported": service.catalog.supports(d.language),
                    "isTransliterationSupported": False})
    return out


def router() -> APIRouter:
    """The custom-domain form ``/translator/text/v3.0/...``; the root paths are dispatched by ``app.py``."""
    r = APIRouter(prefix=MICROSOFT_PREFIX, tags=["Microsoft-Translator-compatible"])
    r.add_api_route("/translate", translate, methods=["POST"], name="microsoft_translate")
    r.add_api_route("/languages", languages, methods=["GET"], name="microsoft_languages")
    r.add_api_route("/detect", detect, methods=["POST"], name="microsoft_detect")
    return r
