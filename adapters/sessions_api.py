"""``/v1/sessions``: interactive translation over HTTP (``tower_cat.sessions``).

=======================================  =====================================================================
``POST /v1/sessions``                    start: translate a segment (string in ``tag_handling`` markup, or
                                         ``parts``), with ``instructions``, ``terms`` / ``glossary_ids``, TM
                                         examples, ``max_length``; 201 + the session
``GET /v1/sessions/{id}``                the session: every turn, its checks, code repairs, accepted result
``POST /v1/sessions/{id}/turns``         ``{"instruction": "..."}``: the model revises its last answer
``POST /v1/sessions/{id}/undo``          drop the last revision
``POST /v1/sessions/{id}/accept``        ``{"turn": n?, "force": false}``: accept (written to the server's TM)
``DELETE /v1/sessions/{id}``             204
=======================================  =====================================================================

Each turn's ``text`` is in the session's markup (the tags of the request, each exactly once), ``plain`` is the
text alone, ``codes_ok`` false means the codes could not be restored safely (accept needs ``force``).

Sessions live in SQLite and survive a restart: ``app.state.session_store`` (a ``SessionStore`` or a path) when
set, else ``ServerConfig.sessions`` (``serve --sessions``), else ``$TOWER_CAT_SESSIONS``, else
``<jobs_dir>/sessions.sqlite``, else ``sessions.sqlite`` in the user cache folder. All model work runs on the
service's engine worker, like every other request.

A session belongs to the key that started it (its owner is recorded in the server state): another key gets 404,
the admin key sees all. An accepted result goes to the TM of the key that accepts it (``serve --tm-mode``:
the shared TM, or the key's own; see ``adapters/state.py``).
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any, Union

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from tower_cat.sessions import Session, SessionError, SessionManager, SessionNotFound, SessionStore

from .http import OURS, bearer_key, service_of
from .service import NotFound, ServiceError
from .state import Caller
from .tags import to_markup
from .v1 import SegmentModel, TagMode, TermModel, _parts_json, _segment_in

_LOCK = threading.Lock()


class SessionCreate(BaseModel):
    source_lang: str
    target_lang: str
    segment: Union[str, SegmentModel]
    tag_handling: TagMode = "xml"
    instructions: list[str] = Field(default_factory=list, description="go into the first request")
    glossary_ids: list[str] = Field(default_factory=list)
    terms: list[TermModel] = Field(default_factory=list)
    use_tm: bool = Field(True, description="TM fuzzy matches as examples")
    max_length: int | None = Field(None, ge=1, description="the unit's length limit ('fit the maxwidth')")
    notes: list[str] = Field(default_factory=list, description="context for the model, not translated")
    meta: dict[str, Any] = Field(default_factory=dict, description="yours: unit id, file, user ...")


class TurnCreate(BaseModel):
    instruction: str = Field(..., min_length=1)


class AcceptRequest(BaseModel):
    turn: int | None = Field(None, description="default: the current revision")
    force: bool = Field(False, description="accept even when the codes were not restored safely")


def _default_store(service) -> str:
    config = service.config
    path = config.sessions or os.environ.get("TOWER_CAT_SESSIONS")
    if not path and getattr(service.state, "shared", False):
        path = config.state  # a PostgreSQL state: the sessions live there too, seen by every server
    if not path and getattr(config, "jobs_dir", None):
        path = str(Path(config.jobs_dir) / "sessions.sqlite")
    if not path:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = str(base / "tower-cat" / "sessions.sqlite")
    return path


def manager_of(request: Request) -> SessionManager:
    """The app's session manager, made on first use over the service's engine and TM."""
    state = request.app.state
    manager = getattr(state, "session_manager", None)
    if manager is not None:
        return manager
    with _LOCK:
        manager = getattr(state, "session_manager", None)
        if manager is None:
            service = service_of(request)
            from tower_cat.engine import GenerationOptions

            store = getattr(state, "session_store", None) or _default_store(service)
            if not isinstance(store, SessionStore):
                from .state_postgres import open_session_store  # a SQLite file or a postgresql:// URL

                store = open_session_store(store)
            manager = SessionManager(service.engine, store, tm=service.tm,
                                     options=GenerationOptions(max_new_tokens=service.config.max_new_tokens),
                                     few_shot=service.config.tm_examples, fuzzy_min=service.config.tm_min_score)
            state.session_manager = manager
    return manager


SESSION = "session"   # the kind of record in the state's owners table
MAX_SESSIONS_PER_KEY = 10_000  # one key cannot fill the server's disk with sessions (delete old ones)


def _begin(request: Request) -> Caller:
    request.state.protocol = OURS
    service = service_of(request)
    return service.caller(service.check_key(bearer_key(request)))


def _owned(request: Request, session_id: str, caller: Caller) -> str:
    """``session_id`` when ``caller`` may see it; NotFound otherwise (a session without a recorded owner
    predates tenancy: only the admin key, or a server without keys, sees it)."""
    owner = service_of(request).state.owner(SESSION, session_id)
    if owner is None:  # a state in memory forgets; the session keeps its owner in its own store too
        try:
            owner = manager_of(request).get(session_id).meta.get("_owner")
        except SessionNotFound:
            raise NotFound(f"no session {session_id!r}") from None
    if not caller.sees(owner if owner is not None else ""):
        raise NotFound(f"no session {session_id!r}")
    return session_id


def _tm_of(request: Request, caller: Caller):
    memories = getattr(service_of(request), "memories", None)
    return memories.for_caller(caller) if memories is not None else service_of(request).tm


async def _run(request: Request, fn):
    """Run a session operation on the engine's worker thread; session errors become HTTP errors."""
    service = service_of(request)
    try:
        return await service.batcher.run(fn)
    except SessionNotFound as exc:
        raise NotFound(str(exc).split(" (")[0]) from None
    except SessionError as exc:
        raise ServiceError(str(exc), status=409) from None


def session_view(session: Session) -> dict[str, Any]:
    """The session as JSON, each segment in the markup the session was started with."""
    mode = session.meta.get("tag_handling", "text")
    as_parts = bool(session.meta.get("as_parts"))
    d = session.as_dict()
    d["meta"] = {k: v for k, v in session.meta.items() if k not in ("tag_handling", "as_parts", "_owner")}
    d["tag_handling"] = mode
    d["source"] = {"text": to_markup(session.source, mode), "plain": session.source.text}
    if as_parts:
        d["source"]["parts"] = _parts_json(session.source)
    for view, turn in zip(d["turns"], session.turns):
        view["plain"] = view.pop("text")
        view["text"] = to_markup(turn.segment, mode)
        view.pop("target", None)
        if as_parts:
            view["parts"] = _parts_json(turn.segment)
    d["current"] = d["turns"][-1] if d["turns"] else None
    if d["accepted"]:
        acc = session.accepted
        d["accepted"] = {**d["accepted"], "plain": acc.segment.text, "text": to_markup(acc.segment, mode)}
        d["accepted"].pop("target", None)
    return d


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/sessions", tags=["sessions"])

    @r.post("", status_code=201, summary="Start an interactive translation session for one segment")
    async def create(body: SessionCreate, request: Request):
        caller = _begin(request)
        service = service_of(request)
        manager = manager_of(request)
        src = service.resolve(body.source_lang, "source")
        tgt = service.resolve(body.target_lang, "target")
        item, as_parts = _segment_in(body.segment, body.tag_handling, set())
        segment = item.segment
        if not segment.text.strip():
            raise ServiceError("there is no text to translate")
        # the first request is the translation core's, with the glossaries and TM /v1/translate would use
        glossary = service.glossaries_for(body.glossary_ids, src, tgt, caller)
        meta = {**body.meta, "tag_handling": "text" if as_parts else body.tag_handling, "as_parts": as_parts,
                "_owner": caller.owner}
        kwargs: dict[str, Any] = dict(instructions=body.instructions, notes=body.notes,
                                      extra_terms=[(t.source, t.target) for t in body.terms], glossary=glossary,
                                      context_before=item.context_before, context_after=item.context_after,
                                      max_length=body.max_length, meta=meta)
        tm = _tm_of(request, caller)
        kwargs["tm"] = tm if body.use_tm else None  # None: no examples
        try:
            if caller.owner and service.state.count_owned(SESSION, caller.owner) >= MAX_SESSIONS_PER_KEY:
                raise ServiceError(f"this key has {MAX_SESSIONS_PER_KEY} sessions; delete some first", status=429)
        except NotImplementedError:  # a state that does not count
            pass
        session_id = uuid.uuid4().hex
        service.state.set_owner(SESSION, session_id, caller.owner)
        try:
            session = await _run(request, lambda: manager.start(segment, src, tgt, session_id=session_id,
                                                                **kwargs))
        except BaseException:
            service.state.forget_owner(SESSION, session_id)
            raise
        return session_view(session)

    @r.get("/{session_id}", summary="A session: every turn, its checks and code repairs")
    async def get(session_id: str, request: Request):
        caller = _begin(request)
        manager = manager_of(request)
        _owned(request, session_id, caller)
        try:
            return session_view(manager.get(session_id))
        except SessionNotFound:
            raise NotFound(f"no session {session_id!r}") from None

    @r.post("/{session_id}/turns", summary="Add an instruction: the model revises its last translation")
    async def add_turn(session_id: str, body: TurnCreate, request: Request):
        _owned(request, session_id, _begin(request))
        if not body.instruction.strip():
            raise ServiceError("an empty instruction")
        manager = manager_of(request)
        return session_view(await _run(request, lambda: manager.revise(session_id, body.instruction)))

    @r.post("/{session_id}/undo", summary="Drop the last revision")
    async def undo(session_id: str, request: Request):
        _owned(request, session_id, _begin(request))
        manager = manager_of(request)
        return session_view(await _run(request, lambda: manager.undo(session_id)))

    @r.post("/{session_id}/accept", summary="Accept a revision; it is written to the server's TM")
    async def accept(session_id: str, request: Request, body: AcceptRequest | None = None):
        caller = _begin(request)
        _owned(request, session_id, caller)
        body = body or AcceptRequest()
        manager = manager_of(request)
        tm = _tm_of(request, caller)

        def run():
            manager.accept(session_id, body.turn, force=body.force, tm=tm)
            return manager.get(session_id)

        return session_view(await _run(request, run))

    @r.delete("/{session_id}", status_code=204, summary="Delete a session")
    async def delete(session_id: str, request: Request):
        _owned(request, session_id, _begin(request))
        if not manager_of(request).delete(session_id):
            raise NotFound(f"no session {session_id!r}")
        service_of(request).state.forget_owner(SESSION, session_id)
        return Response(status_code=204)

    return r


__all__ = ["router", "manager_of", "session_view", "SessionCreate", "TurnCreate", "AcceptRequest"]
