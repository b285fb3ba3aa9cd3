"""Our own API under ``/v1``: translate (segments with inline codes, glossaries, TM few-shot, context),
post-edit, QE, TM lookup/add, glossaries, language detection, health, model info and usage.

Segments are strings with inline markup (``tag_handling``: ``xml`` by default, ``html``, ``omegat``, ``text``)
or explicit parts: ``{"parts": ["Click ", {"id": "1", "kind": "open", "xml": "<g id='1'>"}, "Save", …]}`` —
the data model CAT formats load into, each code's ``xml`` kept verbatim. Every translation says where it came
from (``origin``: mt, tm-exact, tm-context, copy), how many TM examples and glossary terms went into the
prompt, and whether its codes were restored safely (``tags_ok``; ``false`` = review before use).
The ``Authorization: Bearer <key>`` header (or ``X-API-Key``) carries the key when the server has keys.
Glossaries, file jobs and sessions belong to the key that created them: another key gets 404, the admin key
(``serve --admin-key``) sees all; the TM a key reads and writes follows ``serve --tm-mode`` (adapters/state.py).
"""

from __future__ import annotations

import asyncio
from typing import Literal, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from tower_cat.document import CodeKind, InlineCode, Segment

from .http import OURS, bearer_key, service_of
from .service import Dictionary, NotFound, SegmentIn, ServiceError, parse_entries
from .state import Caller
from .tags import Markup

TagMode = Literal["text", "xml", "html", "omegat"]


class CodeModel(BaseModel):
    id: str
    kind: Literal["open", "close", "standalone"]
    xml: str
    isolated: bool = False


class SegmentModel(BaseModel):
    text: str | None = Field(None, description="the segment with inline markup (see tag_handling)")
    parts: list[Union[str, CodeModel]] | None = Field(None, description="or text runs and inline codes")
    id: str | None = None
    context_before: list[str] = Field(default_factory=list, description="preceding source segments")
    context_after: list[str] = Field(default_factory=list, description="following source segments")


class TermModel(BaseModel):
    source: str
    target: str


class TranslateRequest(BaseModel):
    source_lang: str | None = Field(None, description="None or 'auto': detected per segment")
    target_lang: str
    segments: list[Union[str, SegmentModel]]
    tag_handling: TagMode = "xml"
    ignore_tags: list[str] = Field(default_factory=list)
    glossary_ids: list[str] = Field(default_factory=list)
    terms: list[TermModel] = Field(default_factory=list)
    context: str | None = Field(None, description="text shown to the model, not translated")
    use_tm: bool = True
    tm_min_score: float | None = Field(None, ge=0, le=101)
    examples: int | None = Field(None, ge=0, le=10, description="TM fuzzy matches used as few-shot examples")
    alternatives: int = Field(0, ge=0, le=3)


class PostEditPair(BaseModel):
    source: str
    translation: str
    id: str | None = None


class PostEditRequest(BaseModel):
    source_lang: str
    target_lang: str
    segments: list[PostEditPair]
    tag_handling: TagMode = "xml"
    glossary_ids: list[str] = Field(default_factory=list)
    terms: list[TermModel] = Field(default_factory=list)


class QEPair(BaseModel):
    source: str
    translation: str


class QERequest(BaseModel):
    source_lang: str
    target_lang: str
    items: list[QEPair]
    backend: Literal["logprob", "llm"] = "logprob"
    spans: bool = False


class TMLookupRequest(BaseModel):
    source_lang: str
    target_lang: str
    text: str
    limit: int = Field(5, ge=1, le=50)
    min_score: float = Field(70.0, ge=0, le=101)


class TMAddRequest(BaseModel):
    source_lang: str
    target_lang: str
    source: str
    target: str
    context: dict | None = None


class GlossaryRequest(BaseModel):
    name: str
    source_lang: str
    target_lang: str
    entries: Union[list[TermModel], str]
    entries_format: Literal["tsv", "csv"] = "tsv"


class DetectRequest(BaseModel):
    text: Union[str, list[str]]


def _segment_in(seg: str | SegmentModel, mode: str, ignore: set[str]) -> tuple[SegmentIn, bool]:
    if isinstance(seg, str):
        return SegmentIn.parse(seg, mode, ignore), False
    if seg.parts is not None:
        parts: list = []
        for p in seg.parts:
            if isinstance(p, str):
                parts.append(p)
            else:
                parts.append(InlineCode(id=p.id, kind=CodeKind(p.kind), xml=p.xml, display=p.xml,
                                        isolated=p.isolated))
        item = SegmentIn(Markup(Segment(parts), "text"), id=seg.id, context_before=seg.context_before,
                         context_after=seg.context_after)
        return item, True
    if seg.text is None:
        raise ServiceError("a segment needs 'text' or 'parts'")
    item = SegmentIn.parse(seg.text, mode, ignore, id=seg.id, context_before=seg.context_before,
                           context_after=seg.context_after)
    return item, False


def _parts_json(segment: Segment) -> list:
    return [p if isinstance(p, str) else {"id": p.id, "kind": p.kind.value, "xml": p.xml, "isolated": p.isolated}
            for p in segment.parts]


def _begin(request: Request) -> str | None:
    request.state.protocol = OURS
    return service_of(request).check_key(bearer_key(request))


def _caller(request: Request) -> Caller:
    key = _begin(request)
    return service_of(request).caller(key)


def _tm(request: Request, caller: Caller):
    service = service_of(request)
    tm = service.memories.for_caller(caller)
    if tm is None:
        raise NotFound("no translation memory is configured (start the server with --tm DB)")
    return tm


def _own_glossaries(service, glossary_ids, key: str | None) -> None:
    """404 for a glossary id the key does not see, before any work."""
    caller = service.caller(key)
    for gid in glossary_ids:
        service.glossaries.get(gid, caller)


def _tm_langs(service, source_lang: str, target_lang: str) -> tuple[str, str]:
    """Language codes for a TM write or lookup: well-formed BCP 47 and known to the server's catalog."""
    return service.resolve(source_lang, "source"), service.resolve(target_lang, "target")


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["tower-cat"])

    @r.post("/translate", summary="Translate segments (inline codes, glossaries, TM few-shot, context)")
    async def translate(body: TranslateRequest, request: Request):
        key = _begin(request)
        service = service_of(request)
        _own_glossaries(service, body.glossary_ids, key)
        if len(body.segments) > 500:
            raise ServiceError("at most 500 segments per request", status=413)
        parsed = [_segment_in(s, body.tag_handling, set(body.ignore_tags)) for s in body.segments]
        outs = await service.translate([p[0] for p in parsed], body.source_lang, body.target_lang, key=key,
                                       glossary_ids=body.glossary_ids,
                                       terms=[(t.source, t.target) for t in body.terms], context=body.context,
                                       use_tm=body.use_tm, tm_min_score=body.tm_min_score,
                                       examples=body.examples, alternatives=body.alternatives)
        result = []
        for (_, as_parts), out in zip(parsed, outs):
            d = out.as_dict()
            if as_parts:
                d["parts"] = _parts_json(out.segment)
            result.append(d)
        return {"translations": result, "target_lang": service.resolve(body.target_lang)}

    @r.post("/post-edit", summary="Correct machine translations (automatic post-editing)")
    async def post_edit(body: PostEditRequest, request: Request):
        key = _begin(request)
        service = service_of(request)
        _own_glossaries(service, body.glossary_ids, key)
        pairs = [(SegmentIn.parse(p.source, body.tag_handling, id=p.id), SegmentIn.parse(p.translation,
                                                                                          body.tag_handling))
                 for p in body.segments]
        outs = await service.post_edit(pairs, body.source_lang, body.target_lang, key=key,
                                       glossary_ids=body.glossary_ids,
                                       terms=[(t.source, t.target) for t in body.terms])
        return {"segments": [o.as_dict() for o in outs]}

    @r.post("/qe", summary="Quality estimation: 0-100 per translation (log-prob or LLM judge)")
    async def qe(body: QERequest, request: Request):
        _begin(request)
        service = service_of(request)
        from .tags import parse_markup

        items = [(parse_markup(i.source, "xml").segment.text, parse_markup(i.translation, "xml").segment.text)
                 for i in body.items]
        return {"scores": await service.qe(items, body.source_lang, body.target_lang, backend=body.backend,
                                           spans=body.spans)}

    @r.post("/tm/lookup", summary="Translation-memory matches for a text")
    async def tm_lookup(body: TMLookupRequest, request: Request):
        caller = _caller(request)
        service = service_of(request)
        tm = _tm(request, caller)
        src, tgt = _tm_langs(service, body.source_lang, body.target_lang)
        matches = await asyncio.to_thread(tm.lookup, Segment.from_text(body.text), src, tgt, limit=body.limit,
                                          min_score=body.min_score)
        return {"matches": [m.as_dict() for m in matches]}

    @r.post("/tm", summary="Add an approved translation to the translation memory")
    async def tm_add(body: TMAddRequest, request: Request):
        caller = _caller(request)
        service = service_of(request)
        tm = _tm(request, caller)
        src, tgt = _tm_langs(service, body.source_lang, body.target_lang)
        if not body.source.strip() or not body.target.strip():
            raise ServiceError("source and target must not be empty")
        entry = await asyncio.to_thread(tm.add, body.source, body.target, src, tgt, context=body.context,
                                        origin="human")
        return JSONResponse({"entry_id": entry}, status_code=201)

    @r.get("/glossaries", summary="List glossaries (created here, by DeepL clients, or loaded with --glossary)")
    async def glossaries(request: Request):
        caller = _caller(request)
        return {"glossaries": [_glossary_json(g) for g in service_of(request).glossaries.list(caller)]}

    @r.post("/glossaries", summary="Create a glossary")
    async def create_glossary(body: GlossaryRequest, request: Request):
        caller = _caller(request)
        service = service_of(request)
        if isinstance(body.entries, str):
            entries = parse_entries(body.entries, body.entries_format)
        else:
            entries = parse_entries("\n".join(f"{t.source}\t{t.target}" for t in body.entries), "tsv")
        src = service.resolve(body.source_lang, "source").split("-")[0]
        tgt = service.resolve(body.target_lang, "target").split("-")[0]
        g = service.glossaries.create(body.name, [Dictionary(src, tgt, entries)], owner=caller.owner)
        return JSONResponse(_glossary_json(g), status_code=201)

    @r.get("/glossaries/{glossary_id}")
    async def get_glossary(glossary_id: str, request: Request):
        caller = _caller(request)
        return _glossary_json(service_of(request).glossaries.get(glossary_id, caller))

    @r.get("/glossaries/{glossary_id}/entries")
    async def glossary_entries(glossary_id: str, request: Request):
        caller = _caller(request)
        g = service_of(request).glossaries.get(glossary_id, caller)
        return {"dictionaries": [{"source_lang": d.source_lang, "target_lang": d.target_lang,
                                  "entries": [{"source": s, "target": t} for s, t in d.entries]}
                                 for d in g.dictionaries]}

    @r.delete("/glossaries/{glossary_id}")
    async def delete_glossary(glossary_id: str, request: Request):
        caller = _caller(request)
        service_of(request).glossaries.delete(glossary_id, caller)
        return Response(status_code=204)

    @r.post("/detect", summary="Guess the language of texts (script + stopword heuristic)")
    async def detect(body: DetectRequest, request: Request):
        _begin(request)
        service = service_of(request)
        texts = body.text if isinstance(body.text, list) else [body.text]
        return {"detections": [[{"language": d.language, "confidence": d.confidence}
                                for d in service.detector.rank(t)] for t in texts]}

    @r.get("/health", summary="Liveness and queue depth")
    async def health(request: Request):
        service = service_of(request)
        return {"status": "ok", "model_loaded": service.engine.is_loaded, "pending": service.batcher.pending,
                "max_pending": service.config.max_pending}

    @r.get("/model", summary="The served model, its languages and engine counters")
    async def model(request: Request):
        _begin(request)
        return service_of(request).model_info()

    @r.get("/languages")
    async def languages(request: Request):
        service = service_of(request)
        return {"languages": [{"code": c, "name": service.catalog.name(c)} for c in service.catalog.all_codes()]}

    @r.get("/usage", summary="Characters and requests per API key")
    async def usage(request: Request):
        key = _begin(request)
        service = service_of(request)
        u = service.usage.get(key)
        return {"characters": u.characters, "requests": u.requests, "segments": u.segments,
                "character_limit": service.config.character_limit}

    from .jobs import add_routes

    add_routes(r)
    return r


def _glossary_json(g) -> dict:
    d = g.v3()
    d["source"] = "file" if g.builtin is not None else "api"
    return d
