"""DeepL API compatibility: ``/v2/translate``, languages, usage, glossaries (v2 and the v3 endpoints Weblate calls).

Follows what the official client (``deepl`` 1.32) and Weblate send and read:

* JSON or form bodies (repeated ``text=``; ``text[]`` too), and the legacy ``GET /v2/translate?text=…`` with
  ``auth_key``; the key from ``Authorization: DeepL-Auth-Key <key>`` or ``auth_key``.
* ``billed_characters`` in every translation (the client does ``int(...)`` on it): DeepL's rule — the source
  text's characters (Unicode code points), tags and their attributes *not* counted when ``tag_handling`` is
  set, ``context`` not counted, an entity counted as the one character it stands for — the same number
  ``/v2/usage`` adds up (``Service.translate`` counts ``segment.text``); ``detected_source_language``
  always set (given or detected).
* ``GET /v2/languages`` reads ``type`` from the query *or* a form body (the client sends a body on GET).
* Glossary ``creation_time`` with fractional seconds; ``/entries`` answers TSV; v2 glossaries take base codes.
* Errors ``{"message": …}`` with DeepL's status codes (400, 403, 404, 413, 429, 456).

``formality`` is accepted and ignored (``supports_formality`` is false: the Tower prompts have no register
control); ``split_sentences``, ``preserve_formatting``, ``model_type`` and friends are accepted and ignored.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .http import DEEPL, Params, bearer_key, multi_route, read_params, service_of
from .service import Dictionary, NotFound, SegmentIn, ServiceError, entries_tsv, parse_entries

FORMALITIES = {"default", "more", "less", "prefer_more", "prefer_less"}
V3_RESOURCES = ("translate_text", "translate_document", "glossary", "voice", "write", "style_rules")


async def _begin(request: Request) -> tuple[Params, str | None]:
    request.state.protocol = DEEPL
    params = await read_params(request)
    key = service_of(request).check_key(bearer_key(request, params))
    return params, key


def _tag_list(values: list) -> set[str]:
    out: set[str] = set()
    for v in values:
        for part in str(v).split(","):
            if part.strip():
                out.add(part.strip())
    return out


_FORM_DICTIONARY = re.compile(r"^dictionaries\[(\d+)\]\.(source_lang|target_lang|entries|entries_format)$")


def _dictionaries_param(params: Params) -> list[dict]:
    """v3 glossary dictionaries as JSON carries them (a list of objects) or as deepl-node sends them, form-encoded
    (``dictionaries[0].source_lang=…&dictionaries[0].entries=…``). [] when absent; a 400 when present but not
    readable, so a dictionary is never silently dropped."""
    raw = params.get("dictionaries")
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
            raise ServiceError("Parameter 'dictionaries' must be a list of objects with source_lang, target_lang, "
                               "entries and entries_format.")
        return raw
    found: dict[int, dict] = {}
    for name, values in params.data.items():
        if not name.startswith("dictionaries"):
            continue
        m = _FORM_DICTIONARY.match(name)
        if not m:
            raise ServiceError(f"Parameter '{name}' is not readable: send dictionaries[N].source_lang, "
                               "dictionaries[N].target_lang, dictionaries[N].entries, dictionaries[N].entries_format.")
        if len(values) != 1:
            raise ServiceError(f"Parameter '{name}' is given more than once.")
        found.setdefault(int(m.group(1)), {})[m.group(2)] = values[0]
    if sorted(found) != list(range(len(found))):
        raise ServiceError("Parameter 'dictionaries' is not readable: indices must run 0, 1, 2, … without gaps.")
    return [found[i] for i in range(len(found))]


def _glossary_for_pair(service, gid: str, src: str, tgt: str, key: str | None):
    g = service.glossaries.get(gid, service.caller(key))
    if g.builtin is None and g.dictionary(src, tgt) is None:
        raise ServiceError("Glossary does not match the source and target language of the request")
    return g


def router() -> APIRouter:
    r = APIRouter(tags=["DeepL-compatible"])

    @multi_route(r, "/v2/translate")
    async def translate(request: Request):
        params, key = await _begin(request)
        service = service_of(request)
        texts = params.list("text", "text[]")
        if not texts:
            raise ServiceError("Parameter 'text' not specified.")
        if not all(isinstance(t, str) for t in texts):
            raise ServiceError("Parameter 'text' must be a list of strings.")
        if len(texts) > service.config.max_texts:
            raise ServiceError(f"Too many texts: at most {service.config.max_texts} per request", status=413)
        target = params.get("target_lang")
        if not target:
            raise ServiceError("Parameter 'target_lang' not specified.")
        source = params.get("source_lang") or None
        try:
            tgt = service.resolve(str(target), "target")
        except ServiceError:
            raise ServiceError("Value for 'target_lang' not supported.") from None
        if source:
            try:
                service.resolve(str(source), "source")
            except ServiceError:
                raise ServiceError("Value for 'source_lang' not supported.") from None
        formality = str(params.get("formality") or "default").lower()
        if formality not in FORMALITIES:
            raise ServiceError("Value for 'formality' not supported.")
        gids = [str(g) for g in params.list("glossary_id", "glossary_ids") if g]
        if gids and not source:
            raise ServiceError("Use of a glossary requires the source_lang parameter to be set.")
        for gid in gids:
            try:
                _glossary_for_pair(service, gid, str(source), tgt, key)
            except NotFound:
                raise ServiceError(f"Glossary {gid} not found") from None
        tag_handling = str(params.get("tag_handling") or "").lower()
        if tag_handling not in ("", "xml", "html"):
            raise ServiceError("Value for 'tag_handling' not supported.")
        mode = tag_handling or "text"
        ignore = _tag_list(params.list("ignore_tags"))
        context = params.get("context")
        items = [SegmentIn.parse(t, mode, ignore) for t in texts]
        outs = await service.translate(items, source, tgt, key=key, glossary_ids=gids,
                                       context=str(context) if context else None)
        translations = []
        for item, out in zip(items, outs):  # billed: text characters, tags excluded, as /v2/usage counts
            translations.append({"detected_source_language": out.source_lang.split("-")[0].upper(),
                                 "text": out.text, "billed_characters": len(item.segment.text)})
        return {"translations": translations}

    @multi_route(r, "/v2/languages")
    async def languages(request: Request):
        params, _ = await _begin(request)
        catalog = service_of(request).catalog
        kind = str(params.get("type") or "source").lower()
        if kind not in ("source", "target"):
            raise ServiceError("Value for 'type' not supported.")
        return catalog.deepl_targets() if kind == "target" else catalog.deepl_sources()

    @multi_route(r, "/v2/usage")
    async def usage(request: Request):
        _, key = await _begin(request)
        service = service_of(request)
        u = service.usage.get(key)
        limit = service.config.character_limit
        return {"character_count": u.characters, "character_limit": limit if limit is not None else 10 ** 12}

    @multi_route(r, "/v2/glossary-language-pairs")
    async def glossary_pairs(request: Request):
        await _begin(request)
        return {"supported_languages": service_of(request).catalog.glossary_pairs()}

    # -- v2 glossaries ----------------------------------------------------------------------------------

    def _dictionary(service, source_lang, target_lang, entries, entries_format) -> Dictionary:
        if not source_lang or not target_lang:
            raise ServiceError("Parameters 'source_lang' and 'target_lang' are required.")
        try:
            src = service.resolve(str(source_lang), "source").split("-")[0]
            tgt = service.resolve(str(target_lang), "target").split("-")[0]
        except ServiceError:
            raise ServiceError("Unsupported glossary source and target language pair") from None
        if entries is None:
            raise ServiceError("Parameter 'entries' not specified.")
        return Dictionary(src, tgt, parse_entries(str(entries), str(entries_format or "tsv")))

    def _visible(service, key):
        return service.glossaries.list(service.caller(key))

    def _get_glossary(service, gid: str, key):
        return service.glossaries.get(gid, service.caller(key))

    @r.post("/v2/glossaries")
    async def create_glossary(request: Request):
        params, key = await _begin(request)
        service = service_of(request)
        d = _dictionary(service, params.get("source_lang"), params.get("target_lang"), params.get("entries"),
                        params.get("entries_format"))
        g = service.glossaries.create(str(params.get("name") or ""), [d], owner=service.caller(key).owner)
        return JSONResponse(g.v2(), status_code=201)

    @r.get("/v2/glossaries")
    async def list_glossaries(request: Request):
        _, key = await _begin(request)
        service = service_of(request)
        return {"glossaries": [g.v2() for g in _visible(service, key) if g.builtin is None]}

    @r.get("/v2/glossaries/{glossary_id}")
    async def get_glossary(glossary_id: str, request: Request):
        _, key = await _begin(request)
        return _get_glossary(service_of(request), glossary_id, key).v2()

    @r.get("/v2/glossaries/{glossary_id}/entries")
    async def glossary_entries(glossary_id: str, request: Request):
        _, key = await _begin(request)
        g = _get_glossary(service_of(request), glossary_id, key)
        entries = g.dictionaries[0].entries if g.dictionaries else []
        return PlainTextResponse(entries_tsv(entries), media_type="text/tab-separated-values")

    @r.delete("/v2/glossaries/{glossary_id}")
    async def delete_glossary(glossary_id: str, request: Request):
        _, key = await _begin(request)
        service = service_of(request)
        service.glossaries.delete(glossary_id, service.caller(key))
        return Response(status_code=204)

    # -- v3 languages and glossaries (Weblate 2026, DeepLClient) -----------------------------------------

    @r.get("/v3/languages")
    async def languages_v3(request: Request):
        params, _ = await _begin(request)
        resource = str(params.get("resource") or "translate_text")
        if resource not in ("translate_text", "glossary"):
            raise NotFound(f"resource {resource!r} is not offered by this server")
        return service_of(request).catalog.deepl_v3(resource)

    @r.get("/v3/languages/resources")
    async def resources_v3(request: Request):
        await _begin(request)
        return [{"resource": "translate_text", "features": ["tag_handling", "glossary"]},
                {"resource": "glossary", "features": []}]

    @r.post("/v3/glossaries")
    async def create_v3(request: Request):
        params, key = await _begin(request)
        service = service_of(request)
        dicts = _dictionaries_param(params)
        if not dicts:
            raise ServiceError("Parameter 'dictionaries' not specified.")
        ds = [_dictionary(service, d.get("source_lang"), d.get("target_lang"), d.get("entries"),
                          d.get("entries_format")) for d in dicts]
        g = service.glossaries.create(str(params.get("name") or ""), ds, owner=service.caller(key).owner)
        return JSONResponse(g.v3(), status_code=201)

    @r.get("/v3/glossaries")
    async def list_v3(request: Request):
        _, key = await _begin(request)
        service = service_of(request)
        return {"glossaries": [g.v3() for g in _visible(service, key) if g.builtin is None]}

    @r.get("/v3/glossaries/{glossary_id}")
    async def get_v3(glossary_id: str, request: Request):
        _, key = await _begin(request)
        return _get_glossary(service_of(request), glossary_id, key).v3()

    @r.patch("/v3/glossaries/{glossary_id}")
    async def patch_v3(glossary_id: str, request: Request):
        params, key = await _begin(request)
        service = service_of(request)
        g = _get_glossary(service, glossary_id, key)
        dicts = _dictionaries_param(params)
        if not params.get("name") and not dicts:
            raise ServiceError("Parameter 'name' or 'dictionaries' not specified.")
        news = [_dictionary(service, d.get("source_lang"), d.get("target_lang"), d.get("entries"),
                            d.get("entries_format")) for d in dicts]  # every one read before anything changes
        if params.get("name"):
            g.name = str(params.get("name"))
        for new in news:
            old = g.dictionary(new.source_lang, new.target_lang)
            if old is not None:  # PATCH merges entries into the existing dictionary
                merged = dict(old.entries)
                merged.update(new.entries)
                new = Dictionary(new.source_lang, new.target_lang, list(merged.items()))
                g.dictionaries.remove(old)
            g.dictionaries.append(new)
        service.glossaries.save(g)
        return g.v3()

    @r.put("/v3/glossaries/{glossary_id}/dictionaries")
    async def put_dictionary_v3(glossary_id: str, request: Request):
        params, key = await _begin(request)
        service = service_of(request)
        g = _get_glossary(service, glossary_id, key)
        new = _dictionary(service, params.get("source_lang"), params.get("target_lang"), params.get("entries"),
                          params.get("entries_format"))
        old = g.dictionary(new.source_lang, new.target_lang)
        if old is not None:
            g.dictionaries.remove(old)
        g.dictionaries.append(new)
        service.glossaries.save(g)
        return {"source_lang": new.source_lang, "target_lang": new.target_lang, "entry_count": len(new.entries)}

    @r.delete("/v3/glossaries/{glossary_id}/dictionaries")
    async def delete_dictionary_v3(glossary_id: str, request: Request):
        params, key = await _begin(request)
        service = service_of(request)
        g = _get_glossary(service, glossary_id, key)
        d = g.dictionary(str(params.get("source_lang") or ""), str(params.get("target_lang") or ""))
        if d is None:
            raise NotFound("dictionary not found")
        g.dictionaries.remove(d)
        service.glossaries.save(g)
        return Response(status_code=204)

    @r.get("/v3/glossaries/{glossary_id}/entries")
    async def entries_v3(glossary_id: str, request: Request):
        params, key = await _begin(request)
        g = _get_glossary(service_of(request), glossary_id, key)
        src, tgt = params.get("source_lang"), params.get("target_lang")
        dicts = [g.dictionary(str(src), str(tgt))] if src and tgt else list(g.dictionaries)
        if not dicts or dicts[0] is None:
            raise NotFound("dictionary not found")
        return {"dictionaries": [{"source_lang": d.source_lang, "target_lang": d.target_lang,
                                  "entries": entries_tsv(d.entries), "entries_format": "tsv"} for d in dicts]}

    @r.delete("/v3/glossaries/{glossary_id}")
    async def delete_v3(glossary_id: str, request: Request):
        _, key = await _begin(request)
        service = service_of(request)
        service.glossaries.delete(glossary_id, service.caller(key))
        return Response(status_code=204)

    return r
