"""Interactive translation sessions on tiny Tower-like models: the exact multi-turn chat template, inline codes
kept across turns, instruction checks with one retry, context truncation, SQLite persistence, TM acceptance,
and the /v1/sessions endpoints."""

from __future__ import annotations

import collections
import warnings

import pytest

from tower_cat import codes, prompts
from tower_cat.document import CodeKind, InlineCode, Segment
from tower_cat.engine import Generation, GenerationOptions, Hypothesis
from tower_cat.sessions import (SessionError, SessionManager, SessionNotFound, SessionStore,
                                segment_from_markup, segment_markup)
from tower_cat.tm import TranslationMemory

OPTIONS = GenerationOptions(max_new_tokens=12)

B_OPEN = InlineCode("1", CodeKind.OPEN, '<g id="1">', tag="g")
B_CLOSE = InlineCode("1", CodeKind.CLOSE, "</g>", tag="g")
BR = InlineCode("2", CodeKind.STANDALONE, '<x id="2"/>', tag="x")
SOURCE = Segment(["Click ", B_OPEN, "Save", B_CLOSE, " to keep your changes.", BR])


@pytest.fixture(scope="module")
def engines(tiny_models):
    from tower_cat.engine import Engine

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Gemma 2 on CT2 is approximate
        for arch in ("llama", "gemma2"):
            out[arch] = Engine.load(tiny_models[arch].ct2_path, device="cpu", compute_type="float32", threads=1)
    yield out
    for e in out.values():
        e.close()


@pytest.fixture
def recorder(monkeypatch):
    """Record every prompt an engine is asked for (the engine still generates)."""
    def attach(engine):
        calls: list = []
        real = engine.generate

        def generate(prompts_, options=None, *, sources=None):
            calls.append([list(p) for p in prompts_])
            return real(prompts_, options, sources=sources)

        monkeypatch.setattr(engine, "generate", generate)
        return calls
    return attach


def scripted(manager: SessionManager, outputs: list[str]) -> list:
    """Make the manager's model answer with these texts in turn; returns the list of prompts it was sent."""
    sent: list = []
    queue = list(outputs)

    def generate(messages, source):
        sent.append(messages)
        return Generation((Hypothesis(queue.pop(0), (), -0.5, False),), cached=False)

    manager._generate = generate  # type: ignore[method-assign]
    return sent


def chatml(messages) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def gemma_turns(messages) -> str:
    role = {"user": "user", "assistant": "model"}
    return ("<bos>" + "".join(f"<start_of_turn>{role[m['role']]}\n{m['content'].strip()}<end_of_turn>\n"
                              for m in messages) + "<start_of_turn>model\n")


# ------------------------------------------------------------------------------------------------ chat template

@pytest.mark.parametrize("arch, by_hand", [("llama", chatml), ("gemma2", gemma_turns)])
def test_three_turns_render_the_models_own_multi_turn_template(arch, by_hand, engines, recorder, tmp_path):
    engine = engines[arch]
    calls = recorder(engine)
    manager = SessionManager(engine, SessionStore(tmp_path / "s.db"), options=OPTIONS)
    session = manager.start(SOURCE, "en", "de")
    session = manager.revise(session.id, "more formal")
    session = manager.revise(session.id, "friendlier, please")
    assert len(session.turns) == 3 and len(calls) == 3  # unverifiable instructions: no retries

    rendered = codes.render(SOURCE)
    t0, t1, t2 = session.turns
    expected = prompts.translate_messages(rendered.text, "en", "de", wording=engine.info.wording)
    expected = prompts.revision_messages(expected, t0.markup, prompts.revision_request("more formal", has_tags=True))
    expected = prompts.revision_messages(expected, t1.markup,
                                         prompts.revision_request("friendlier, please", has_tags=True))
    sent = calls[-1][0]
    assert sent == expected == session.messages() == manager.prompt(session)
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]

    text = engine.render(sent).text
    assert text == engine.tokenizer.apply_chat_template(expected, tokenize=False, add_generation_prompt=True)
    assert text == by_hand(expected)
    if arch == "llama":
        assert text.startswith("<|im_start|>user\nTranslate the following text from English into German.\n"
                               "English: Click <1>Save</1> to keep your changes.<2/>\nGerman:<|im_end|>\n"
                               "<|im_start|>assistant\n")
    else:
        assert text.startswith("<bos><start_of_turn>user\nTranslate the following English source text to German:\n")
    ids = engine.render(sent).ids
    assert ids.count(engine.tokenizer.bos_token_id) == 1
    # the answer of the last turn closes the conversation (what finetune/ would train on)
    assert session.messages(answer=True)[-1] == {"role": "assistant", "content": t2.markup}


# ------------------------------------------------------------------------------------------------ inline codes

def test_codes_survive_every_turn_with_the_tiny_model(engines, tmp_path):
    manager = SessionManager(engines["llama"], SessionStore(tmp_path / "s.db"), options=OPTIONS)
    session = manager.start(SOURCE, "en", "de")
    for instruction in ("more formal", "shorter", "use the polite form"):
        session = manager.revise(session, instruction)
    want = collections.Counter(SOURCE.codes)
    for i, turn in enumerate(session.turns):
        assert collections.Counter(turn.segment.codes) == want, i
        assert codes.pair_codes(turn.segment) == [(B_OPEN, B_CLOSE)]
        assert turn.ok == (codes.check(SOURCE, turn.segment) == [] and turn.ok)
        if not turn.ok or turn.problems:
            assert turn.problems  # what the parser repaired or flagged is reported
        # the next turn sees this answer with every tag
        assert turn.markup == codes.render_like(codes.render(SOURCE), turn.segment)[0]
        assert all(tag in turn.markup for tag in ("<1>", "</1>", "<2/>"))
    for i in range(1, len(session.turns)):
        assert session.messages(i)[-2]["content"] == session.turns[i - 1].markup


def test_codes_repaired_or_flagged_like_the_pipeline(engines, tmp_path):
    manager = SessionManager(engines["llama"], SessionStore(":memory:"), options=OPTIONS)
    sent = scripted(manager, [
        "Klicken Sie auf <1>Speichern</1>, um Ihre Änderungen zu behalten.",   # <2/> missing: added at the end
        "Klicken Sie auf Speichern, um Ihre Änderungen zu behalten.",          # pair lost inside the text: flagged
        "Zum Behalten <1>Speichern</1> anklicken.<2/><7/>",                    # invented tag removed
    ])
    session = manager.start(SOURCE, "en", "de")
    t0 = session.current
    assert t0.ok and t0.problems == ["missing tag <2/> added at the end"]
    assert segment_markup(t0.segment) == ('Klicken Sie auf <g id="1">Speichern</g>, um Ihre Änderungen zu behalten.'
                                          '<x id="2"/>')
    assert t0.markup == "Klicken Sie auf <1>Speichern</1>, um Ihre Änderungen zu behalten.<2/>"

    session = manager.revise(session, "shorter")
    t1 = session.current
    assert not t1.ok and any("cannot tell" in p for p in t1.problems)
    assert collections.Counter(t1.segment.codes) == collections.Counter(SOURCE.codes)
    with pytest.raises(SessionError, match="could not be restored safely"):
        manager.accept(session)

    session = manager.revise(session, "more direct")
    t2 = session.current
    assert t2.ok and "invented tag <7/> removed" in t2.problems
    assert sent[2][-2] == {"role": "assistant", "content": t1.markup}  # the repaired answer, all tags in it
    assert "<1>" in t1.markup and "<2/>" in t1.markup


def test_markup_input_round_trips():
    seg = segment_from_markup("Click <1>Save</1> now<2/> &lt;3> ok")
    assert [p.kind for p in seg.codes] == [CodeKind.OPEN, CodeKind.CLOSE, CodeKind.STANDALONE]
    assert seg.text == "Click Save now <3> ok"
    assert codes.render(seg).text == "Click <1>Save</1> now<2/> &lt;3> ok"
    assert segment_markup(seg) == "Click <1>Save</1> now<2/> <3> ok"


# ------------------------------------------------------------------------------------------------ instructions

def test_failed_checks_are_fed_back_once(engines):
    manager = SessionManager(engines["llama"], SessionStore(":memory:"), options=OPTIONS)
    sent = scripted(manager, ["Eine neue Notiz anlegen.", "Einen neuen Vermerk anlegen.", "Notiz anlegen",
                              "NOTIZ ANLEGEN.", "NOTIZ ANLEGEN."])
    session = manager.start("Create a new note", "en", "de",
                            instructions=["max 20 characters", "make it friendly"])
    assert "Follow these instructions:\n- max 20 characters\n- make it friendly\n" in session.turns[0].request
    t0 = session.current
    assert t0.report.retried and t0.report.first_failed == [
        prompts.check_failure_text("max_length", length=24, limit=20)]
    assert len(sent) == 2 and sent[1][-1]["content"] == prompts.instruction_feedback(t0.report.first_failed)
    assert sent[1][-2] == {"role": "assistant", "content": "Eine neue Notiz anlegen."}
    # the retry is still too long, and further over: the first answer is kept
    assert t0.text == "Eine neue Notiz anlegen." and not t0.report.ok
    assert t0.report.unverifiable == ["make it friendly"]

    session = manager.revise(session, "use 'Notiz', don't use 'Vermerk'")
    t1 = session.current
    assert not t1.report.retried and t1.report.ok and t1.text == "Notiz anlegen"
    assert [(r.kind, r.passed) for r in t1.report.results] == [("max_length", True), ("required", True),
                                                               ("forbidden", True)]
    # earlier checks stay in force; a new case rule is checked together with them
    session = manager.revise(session, "all caps, no trailing punctuation")
    t2 = session.current
    assert t2.report.retried and not t2.report.ok
    assert [r.kind for r in t2.report.failed] == ["no_trailing_punctuation"]
    assert [c.kind for c in session.checks] == ["max_length", "required", "forbidden", "case",
                                                "no_trailing_punctuation"]
    session = manager.undo(session)
    assert [c.kind for c in session.checks] == ["max_length", "required", "forbidden"]


# ------------------------------------------------------------------------------------------------ context window

def test_oldest_turns_are_left_out_to_fit_the_context(engines, recorder):
    engine = engines["llama"]
    manager = SessionManager(engine, SessionStore(":memory:"), options=OPTIONS)
    calls = recorder(engine)
    session = manager.start("Create a new note", "en", "de")
    for instruction in ("more formal", "shorter", "friendlier"):
        session = manager.revise(session, instruction)
    full = session.messages()
    assert len(full) == 7
    # room for the first request + the latest exchange, not more
    three = [full[0], {"role": "assistant", "content": session.current.markup},
             {"role": "user", "content": prompts.revision_request("make it concise")}]
    budget = engine.budget(codes.render(session.source).text, OPTIONS)
    manager.max_context_tokens = len(engine.render(three).ids) + budget + 2
    session = manager.revise(session, "make it concise")
    prompt = calls[-1][0]
    assert prompt[0] == full[0]  # the first request (source, terms, examples) always stays
    assert len(prompt) == 3 and prompt[1] == {"role": "assistant", "content": session.turns[-2].markup}
    assert prompt[2]["content"].startswith("make it concise")
    assert session.current.dropped == 3
    assert len(engine.render(prompt).ids) <= manager.max_context_tokens
    manager.max_context_tokens = 8
    with pytest.raises(SessionError, match="does not fit"):
        manager.revise(session, "shorter")
    assert len(manager.get(session.id).turns) == 5  # the failed turn was not kept


# ------------------------------------------------------------------------------------------------ persistence, TM

def test_sessions_survive_a_restart_and_accept_into_the_tm(engines, tmp_path):
    engine = engines["llama"]
    path = tmp_path / "sessions.sqlite"
    tm = TranslationMemory(tmp_path / "tm.sqlite")
    first = SessionManager(engine, SessionStore(path), tm=tm, options=OPTIONS)
    session = first.start(SOURCE, "en", "de", meta={"unit": "u7"})
    session = first.revise(session, "more formal")
    first.store.close()

    again = SessionManager(engine, SessionStore(path), tm=tm, options=OPTIONS)  # "the server restarted"
    restored = again.get(session.id)
    assert restored.dump() == session.dump()
    assert restored.meta == {"unit": "u7"} and restored.source == SOURCE
    restored = again.revise(session.id, "shorter")
    assert len(restored.turns) == 3
    assert restored.messages()[:4] == session.messages() + [{"role": "assistant",
                                                            "content": session.turns[1].markup}]
    assert len(again.store) == 1 and session.id in again.store

    with pytest.raises(SessionError, match="first translation"):
        again.undo(again.start("Save", "en", "de").id)

    accepted = again.accept(session.id, force=not restored.current.ok)
    assert accepted.turn == 2 and accepted.tm_entry is not None
    matches = tm.lookup(SOURCE, "en", "de")
    assert matches and matches[0].score == 100 and matches[0].target == restored.current.segment
    assert matches[0].origin == "interactive"
    assert again.get(session.id).accepted.tm_entry == accepted.tm_entry

    # plain text, no codes: accepted without force and found again
    plain = again.start("The printer is out of paper.", "en", "de")
    if plain.current.text.strip():
        again.accept(plain)
        assert tm.lookup("The printer is out of paper.", "en", "de")[0].target == plain.current.segment

    assert again.delete(session.id) and session.id not in again.store
    with pytest.raises(SessionNotFound):
        again.get(session.id)
    tm.close()


def test_glossary_terms_and_tm_examples_go_into_the_first_request(engines, tmp_path):
    from tower_cat.terminology import Glossary

    csv = tmp_path / "glossary.csv"
    csv.write_text("en,de\nnote,Notiz\n", encoding="utf-8")
    tm = TranslationMemory(":memory:")
    tm.add("Create a new folder", "Einen neuen Ordner anlegen", "en", "de")
    manager = SessionManager(engines["llama"], SessionStore(":memory:"), tm=tm, glossary=Glossary.load(csv),
                             options=OPTIONS)
    scripted(manager, ["Eine neue Notiz anlegen"])
    session = manager.start("Create a new note", "en", "de")
    request = session.turns[0].request
    assert "Use these German terms: note = Notiz\n" in request
    assert "English: Create a new folder\nGerman: Einen neuen Ordner anlegen\n" in request
    assert session.current.terms["ok"] is True


def test_a_unit_brings_its_limit_notes_and_context_key(engines):
    from tower_cat.document import Unit, UnitContext

    tm = TranslationMemory(":memory:")
    unit = Unit("u1", Segment(["Save"]), max_length=10, notes=["Button label"],
                context=UnitContext(resname="btn.save", next_source="Cancel"))
    manager = SessionManager(engines["llama"], SessionStore(":memory:"), tm=tm, options=OPTIONS)
    sent = scripted(manager, ["Abspeichern der Daten", "Speichern"])
    session = manager.start(unit, "en", "de", instructions=["fit the maxwidth"])
    assert session.max_length == 10 and [(c.kind, c.value) for c in session.checks] == [("max_length", 10)]
    assert session.instructions == ["fit the maxwidth"]
    assert "Button label" in sent[0][0]["content"] and "Cancel" in sent[0][0]["content"]
    assert session.current.report.retried and session.current.text == "Speichern"
    manager.accept(session)
    match = tm.lookup(unit, "en", "de")[0]
    assert match.kind == "context" and match.target_text == "Speichern"


# ------------------------------------------------------------------------------------------------ HTTP API

def test_sessions_api(engines, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tower_cat.adapters.app import create_app
    from tower_cat.adapters.service import ServerConfig, Service

    tm = TranslationMemory(tmp_path / "tm.sqlite")
    service = Service(engines["llama"], ServerConfig(max_new_tokens=12), tm=tm)
    app = create_app(service)
    if not any(getattr(r, "path", "").startswith("/v1/sessions") for r in app.routes):
        from tower_cat.adapters.sessions_api import router

        app.include_router(router())
    app.state.session_store = SessionStore(tmp_path / "sessions.sqlite")
    try:
        with TestClient(app) as client:
            r = client.post("/v1/sessions", json={"source_lang": "en", "target_lang": "de",
                                                  "segment": 'Click <b>Save</b> now<br/>', "tag_handling": "html",
                                                  "instructions": ["max 200 characters"]})
            assert r.status_code == 201, r.text
            s = r.json()
            sid = s["id"]
            assert s["source"]["text"] == 'Click <b>Save</b> now<br/>'
            assert s["current"]["checks"]["checks"][0]["kind"] == "max_length"
            for t in ("more formal", "shorter"):
                r = client.post(f"/v1/sessions/{sid}/turns", json={"instruction": t})
                assert r.status_code == 200, r.text
            s = r.json()
            assert len(s["turns"]) == 3 and s["current"]["instruction"] == "shorter"
            for turn in s["turns"]:
                assert turn["text"].count("<b>") == 1 and turn["text"].count("</b>") == 1
                assert turn["text"].count("<br/>") == 1
            assert client.get(f"/v1/sessions/{sid}").json()["turns"] == s["turns"]
            r = client.post(f"/v1/sessions/{sid}/undo")
            assert r.status_code == 200 and len(r.json()["turns"]) == 2
            r = client.post(f"/v1/sessions/{sid}/accept", json={"force": True})
            assert r.status_code == 200, r.text
            acc = r.json()["accepted"]
            assert acc["turn"] == 1 and acc["tm_entry"]
            assert tm.lookup(parse_html("Click <b>Save</b> now<br/>"), "en", "de")[0].entry_id == acc["tm_entry"]
            assert client.post("/v1/sessions/nope/turns", json={"instruction": "x"}).status_code == 404
            assert client.post(f"/v1/sessions/{sid}/turns", json={"instruction": "  "}).status_code in (400, 422)
            assert client.delete(f"/v1/sessions/{sid}").status_code == 204
            assert client.get(f"/v1/sessions/{sid}").status_code == 404
    finally:
        service.close()
        tm.close()


def parse_html(text: str) -> Segment:
    from tower_cat.adapters.tags import parse_markup

    return parse_markup(text, "html").segment
