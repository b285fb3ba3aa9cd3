"""Every task prompt tower-cat sends to a model, in one place: plain data in, chat messages out.

Translation uses the wordings Tower models were trained on (model cards): TowerInstruct's
"Translate the following text from {Src} into {Tgt}.\\n{Src}: {text}\\n{Tgt}:" and Tower+'s
"Translate the following {Src} source text to {Tgt}:\\n{Src}: {text}\\n{Tgt}: ". Few-shot TM examples use
TowerEval's layout, one "{Src}: {src}\\n{Tgt}: {tgt}\\n" block per example before the query. Tower's own
post-edit / QE wordings are not public, so those are clear instructions in the same style; `finetune/`
trains on exactly these functions, so a tuned model and the runtime always agree.

BayLing (wording ``bayling``) asks as its repository's scripts do (ictnlp/BayLing ``scripts/translate.py`` and
``scripts/constrained_translate.py``): "Provide the {Tgt} translation for this sentence: {text}", glossary terms as
"\nMake sure to include these words: {t1}, {t2}". Its conversation format (``bayling_conversation``, which the
engine renders BayLing models with) is the repository's ``bayling/conversation.py`` "BayLing" template.

The engine renders the messages with the model's own chat template; nothing here knows about tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from tower_cat.errors import InvalidArgument
from tower_cat.languages import language_name

Message = dict[str, str]

WORDINGS = ("instruct", "plus", "base", "bayling")


@dataclass(frozen=True)
class Example:
    """A translation memory pair shown to the model before the query."""

    source: str
    target: str


@dataclass(frozen=True)
class Term:
    """A glossary entry the translation must use."""

    source: str
    target: str


@dataclass(frozen=True)
class ErrorSpan:
    """An error the model marked in a translation: character offsets into that translation."""

    text: str
    severity: str           # minor | major (| critical, if a model says so)
    start: int | None
    end: int | None


def _names(source_lang: str, target_lang: str, wording: str) -> tuple[str, str]:
    # TowerInstruct and TowerBase were trained on plain names; Tower+ knows regional variants (BayLing's scripts
    # take any English name: the variant keeps pt-BR and pt-PT apart)
    variant = wording in ("plus", "bayling")
    return language_name(source_lang, variant=variant), language_name(target_lang, variant=variant)


def _check_wording(wording: str) -> str:
    if wording not in WORDINGS:
        raise InvalidArgument(f"unknown wording {wording!r}; choose one of {', '.join(WORDINGS)}")
    return wording


def _pairs(src: str, tgt: str, examples: Iterable[Example | tuple[str, str]]) -> str:
    out = []
    for ex in examples:
        s, t = (ex.source, ex.target) if isinstance(ex, Example) else ex
        out.append(f"{src}: {s}\n{tgt}: {t}\n")
    return "".join(out)


def _terms_line(terms: Sequence[Term | tuple[str, str]], tgt: str) -> str:
    if not terms:
        return ""
    pairs = "; ".join(f"{t.source} = {t.target}" if isinstance(t, Term) else f"{t[0]} = {t[1]}" for t in terms)
    return f"Use these {tgt} terms: {pairs}\n"


def _context_lines(src: str, before: Sequence[str], after: Sequence[str], notes: Sequence[str] = ()) -> str:
    out = ""
    if notes:
        out += "Notes on the text, for context only: " + " ".join(notes) + "\n"
    if before:
        out += f"Preceding {src} text, for context only: " + " ".join(before) + "\n"
    if after:
        out += f"Following {src} text, for context only: " + " ".join(after) + "\n"
    return out


def unit_notes(msgctxt: str | None = None, resname: str | None = None, notes: Sequence[str] = ()) -> list[str]:
    """The notes a short UI string gets in its translation prompt: PO msgctxt / TMX x-context, the resource key
    (not a bare number), and up to two developer notes, each on one line. The runtime pipeline and the
    fine-tuning data both build them here, so a tuned model sees exactly what it will be sent."""
    out = []
    if msgctxt:
        out.append(f"Context: {msgctxt}.")
    if resname and not resname.isdigit():
        out.append(f"Key: {resname}.")
    for note in notes[:2]:
        note = " ".join(note.split())
        if note:
            out.append(note if len(note) <= 200 else note[:199] + "…")
    return out


def translate_prompt(text: str, source_lang: str, target_lang: str, *, wording: str = "instruct",
                     examples: Sequence[Example | tuple[str, str]] = (), terms: Sequence[Term | tuple[str, str]] = (),
                     context_before: Sequence[str] = (), context_after: Sequence[str] = (),
                     notes: Sequence[str] = ()) -> str:
    """The user-turn text asking for a translation of `text`.

    Without extras it is exactly the model card's prompt. Extras go between the instruction line and the
    query: context (notes such as a resource key or a developer comment, then neighbouring text) and terms
    first, then the few-shot examples, so the examples lead straight into the query.
    """
    src, tgt = _names(source_lang, target_lang, _check_wording(wording))
    extras = _context_lines(src, context_before, context_after, notes) + _terms_line(terms, tgt)
    shots = _pairs(src, tgt, examples)
    if wording == "plus":
        return (f"Translate the following {src} source text to {tgt}:\n" + extras + shots
                + f"{src}: {text}\n{tgt}: ")
    if wording == "base":  # TowerBase: plain completion, few-shot pairs only
        return extras + shots + f"{src}: {text}\n{tgt}:"
    if wording == "bayling":  # the published request; context and examples (our additions) before it
        words = ", ".join(t.target if isinstance(t, Term) else t[1] for t in terms)
        return (_context_lines(src, context_before, context_after, notes) + shots
                + f"Provide the {tgt} translation for this sentence: {text}"
                + (f"\nMake sure to include these words: {words}" if words else ""))
    return f"Translate the following text from {src} into {tgt}.\n" + extras + shots + f"{src}: {text}\n{tgt}:"


def translate_messages(text: str, source_lang: str, target_lang: str, *, wording: str = "instruct",
                       examples: Sequence[Example | tuple[str, str]] = (), terms: Sequence[Term | tuple[str, str]] = (),
                       context_before: Sequence[str] = (), context_after: Sequence[str] = (),
                       notes: Sequence[str] = ()) -> list[Message]:
    """Chat messages for a translation: one user turn, no system prompt (as TowerInstruct was trained)."""
    return [{"role": "user", "content": translate_prompt(
        text, source_lang, target_lang, wording=wording, examples=examples, terms=terms,
        context_before=context_before, context_after=context_after, notes=notes)}]


def post_edit_prompt(source: str, translation: str, source_lang: str, target_lang: str, *,
                     terms: Sequence[Term | tuple[str, str]] = (), wording: str = "instruct") -> str:
    src, tgt = _names(source_lang, target_lang, _check_wording(wording))
    return (f"Post-edit the following {tgt} translation of a {src} text. Correct errors of meaning, grammar "
            f"and terminology, keep everything that is already right, and reply with the corrected "
            f"{tgt} translation only.\n" + _terms_line(terms, tgt)
            + f"{src}: {source}\n{tgt} translation: {translation}\nCorrected {tgt} translation:")


def post_edit_messages(source: str, translation: str, source_lang: str, target_lang: str, *,
                       terms: Sequence[Term | tuple[str, str]] = (), wording: str = "instruct") -> list[Message]:
    """Ask the model to correct a machine translation (automatic post-editing)."""
    return [{"role": "user", "content": post_edit_prompt(source, translation, source_lang, target_lang,
                                                         terms=terms, wording=wording)}]


QE_KINDS = ("score", "spans")


def qe_prompt(source: str, translation: str, source_lang: str, target_lang: str, *, kind: str = "score",
              wording: str = "instruct") -> str:
    src, tgt = _names(source_lang, target_lang, _check_wording(wording))
    pair = f"{src} source: {source}\n{tgt} translation: {translation}\n"
    if kind == "score":
        return (f"Rate the quality of the following translation from {src} into {tgt} on a scale from 0 to 100, "
                "where 0 means no meaning is preserved and 100 means a perfect translation. "
                "Reply with the score only.\n" + pair + "Score:")
    if kind == "spans":
        return (f"Identify the errors in the following translation from {src} into {tgt}. Write each error on "
                'its own line as "error text" - minor or "error text" - major, quoting the erroneous words '
                'exactly as they appear in the translation. If there are no errors, reply "No errors."\n'
                + pair + "Errors:")
    raise InvalidArgument(f"unknown QE kind {kind!r}; choose one of {', '.join(QE_KINDS)}")


def qe_messages(source: str, translation: str, source_lang: str, target_lang: str, *, kind: str = "score",
                wording: str = "instruct") -> list[Message]:
    """Ask for a quality score (kind='score', parse with parse_score) or error spans (parse_error_spans)."""
    return [{"role": "user", "content": qe_prompt(source, translation, source_lang, target_lang, kind=kind,
                                                  wording=wording)}]


# BayLing's conversation template, verbatim from ictnlp/BayLing bayling/conversation.py (commit 8f6ecb91, "BayLing"
# template, SeparatorStyle.BAYLING): system + sep, then per turn role + message + (sep | sep2 + "\n"), and the
# assistant role alone to ask for the answer.
BAYLING_SYSTEM = ("I am an intelligent language assistant developed by the NLP Group of ICT/CAS.\nBelow is a dialog "
                  "consisting of instructions and responses. Write a response that completes the request.\n")
BAYLING_ROLES = {"user": "### Instruction:\n", "assistant": "### Response:\n"}
BAYLING_SEP, BAYLING_SEP2 = "\n", "</s>"


def bayling_conversation(messages: Sequence[Message]) -> str:
    """Messages -> the text BayLing models were trained on (``Conversation.get_prompt`` of BayLing's repository).

    Turns must alternate user/assistant starting with the user; a conversation ending with a user turn ends with
    "### Response:\n" (the model answers), one ending with an assistant turn is complete (training data). A
    leading system message replaces the template's system text, as FastChat's API server (which BayLing's code
    derives from) does; BayLing's own code never sets one."""
    msgs = [dict(m) for m in messages]
    system = BAYLING_SYSTEM
    if msgs and msgs[0].get("role") == "system":
        system = msgs.pop(0)["content"]
    out = system + BAYLING_SEP
    for i, m in enumerate(msgs):
        role = m.get("role")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise InvalidArgument(f"BayLing conversations alternate user and assistant turns; message {i + 1} is "
                                  f"{role!r} where {expected!r} belongs")
        out += BAYLING_ROLES[role] + m["content"] + (BAYLING_SEP if role == "user" else BAYLING_SEP2 + "\n")
    if not msgs or msgs[-1]["role"] == "user":
        out += BAYLING_ROLES["assistant"]
    return out


def revision_messages(messages: Sequence[Message], previous_output: str, instruction: str) -> list[Message]:
    """BayLing-style interactive translation: the model's last answer, then the translator's request."""
    if not instruction.strip():
        raise InvalidArgument("an empty revision instruction")
    return [dict(m) for m in messages] + [{"role": "assistant", "content": previous_output},
                                          {"role": "user", "content": instruction}]


def training_messages(messages: Sequence[Message], response: str) -> list[Message]:
    """A finished conversation (prompt + expected answer): what finetune/ trains on."""
    return [dict(m) for m in messages] + [{"role": "assistant", "content": response}]


# -------------------------------------------------------------------------------------------------------
# Parsing model output

_NUMBER = r"[-+]?\d+(?:[.,]\d+)?"


def parse_score(text: str) -> float | None:
    """A quality score in the model's reply -> 0..1 ('87', 'Score: 87/100', '0.87', '4/5'); None if absent.

    Integers are on the prompt's 0-100 scale ('1' is 0.01); a decimal up to 1 is already a fraction.
    """
    match = re.search(rf"({_NUMBER})\s*(?:/\s*({_NUMBER}))?\s*(%)?", text)
    if not match:
        return None
    value = float(match.group(1).replace(",", "."))
    if match.group(2):
        scale = float(match.group(2).replace(",", "."))
        value = value / scale if scale > 0 else value
    elif match.group(3) or value > 1 or not re.search(r"[.,]", match.group(1)):
        value /= 100  # our prompt asks for 0-100; only a decimal like 0.87 is read as a fraction
    if value < 0:
        return None
    return min(value, 1.0)


_DET = re.compile(r"\"(?P<text>.+?)\"\s*-\s*(?P<severity>minor|major|critical)", re.IGNORECASE)
_TAG = re.compile(r"<(?P<severity>minor|major|critical)>(?P<text>.+?)</(?P=severity)>", re.IGNORECASE | re.DOTALL)


def parse_error_spans(text: str, translation: str | None = None) -> list[ErrorSpan]:
    """Error spans in TowerEval's two formats: `"span" - minor|major` lines or `<minor>…</minor>` tags.

    With `translation`, spans that do not occur in it are dropped (as TowerEval does) and offsets point into
    it; a span flagged twice takes its next occurrence. Tagged output is the translation itself, so its
    offsets are those of the text with the tags removed.
    """
    spans: list[ErrorSpan] = []
    if _TAG.search(text):
        removed = 0
        for m in _TAG.finditer(text):
            span = m.group("text")
            start = m.start() - removed
            removed += len(m.group(0)) - len(span)
            start_in = start
            if translation is not None:
                if span not in translation:
                    continue
                if translation[start:start + len(span)] != span:
                    start_in = translation.find(span)
            spans.append(ErrorSpan(span, m.group("severity").lower(), start_in, start_in + len(span)))
        return spans
    for m in _DET.finditer(text):
        span, severity = m.group("text"), m.group("severity").lower()
        if translation is None:
            spans.append(ErrorSpan(span, severity, None, None))
            continue
        seen = sum(1 for s in spans if s.text == span)
        occurrences = [o.start() for o in re.finditer(re.escape(span), translation)]
        if seen >= len(occurrences):
            continue
        start = occurrences[seen]
        spans.append(ErrorSpan(span, severity, start, start + len(span)))
    return spans


def clean_translation(text: str, target_lang: str | None = None) -> str:
    """Strip what models sometimes add around a translation: surrounding blanks, an echoed "German:" label,
    and anything after a new turn marker."""
    out = text.strip()
    for marker in ("<|im_start|>", "<start_of_turn>", "<|im_end|>", "<end_of_turn>"):
        out = out.split(marker, 1)[0]
    if target_lang:
        for variant in (True, False):
            label = language_name(target_lang, variant=variant) + ":"
            if out.startswith(label):
                out = out[len(label):]
                break
    return out.strip()


# -------------------------------------------------------------------------------------------------------
# Instructions from the translator (instruction-following translation, interactive revision)

def instructions_block(instructions: Sequence[str]) -> str:
    """The translator's instructions as lines of the translation request ('' when there are none)."""
    items = [" ".join(i.split()) for i in instructions if i and i.strip()]
    if not items:
        return ""
    if len(items) == 1:
        return f"Follow this instruction: {items[0]}\n"
    return "Follow these instructions:\n" + "".join(f"- {i}\n" for i in items)


def add_instructions(messages: Sequence[Message], instructions: Sequence[str], *,
                     wording: str = "instruct") -> list[Message]:
    """Translation messages with the translator's instructions in the request.

    The block goes right after the task line ("Translate the following text from …") of the last user turn,
    before context, terms, examples and the query; for the base (completion) wording, at the start. Without
    instructions the messages are returned unchanged.
    """
    out = [dict(m) for m in messages]
    block = instructions_block(instructions)
    if not block:
        return out
    for m in reversed(out):
        if m.get("role") == "user":
            content = m["content"]
            if _check_wording(wording) == "bayling":  # after the request, as its constrained-translation prompt
                m["content"] = content + "\n" + block.rstrip("\n")
            elif wording == "base" or "\n" not in content:
                m["content"] = block + content
            else:
                head, rest = content.split("\n", 1)
                m["content"] = head + "\n" + block + rest
            break
    return out


def revision_request(instruction: str, *, has_tags: bool = False) -> str:
    """A translator's revision instruction as the next user turn; with inline tags, a reminder to keep them."""
    text = instruction.strip()
    if not text:
        raise InvalidArgument("an empty revision instruction")
    if has_tags:
        text += ("\nKeep the numbered tags (such as <1>…</1> and <2/>) around the same words, and reply with "
                 "the revised translation only.")
    else:
        text += "\nReply with the revised translation only."
    return text


CASE_STYLES = {"title": "title case", "upper": "all capital letters", "sentence": "sentence case",
               "lower": "lower case"}


def check_failure_text(kind: str, **detail) -> str:
    """One failed instruction check, in words the model (and the translator) read."""
    if kind == "max_length":
        return (f"it is {detail['length']} characters long, but it must be at most {detail['limit']} characters")
    if kind == "required":
        return f"it does not use \"{detail['word']}\""
    if kind == "forbidden":
        return f"it uses \"{detail['found'] or detail['word']}\", which must not be used"
    if kind == "keep":
        return f"\"{detail['word']}\" must appear exactly as written, untranslated"
    if kind == "case":
        return f"it must be written in {CASE_STYLES.get(detail['style'], detail['style'])}"
    if kind == "no_trailing_punctuation":
        return f"it must not end with punctuation (it ends with \"{detail['found']}\")"
    raise InvalidArgument(f"unknown check kind {kind!r}")


def instruction_feedback(failures: Sequence[str]) -> str:
    """The user turn asking for another try after instruction checks failed (fed back once)."""
    if not failures:
        raise InvalidArgument("no failed checks to report")
    if len(failures) == 1:
        problems = f"The translation does not follow the instructions: {failures[0]}."
    else:
        problems = "The translation does not follow the instructions:\n" + "".join(f"- {f}\n" for f in failures)
        problems = problems.rstrip("\n")
    return problems + "\nRevise the translation so that it does, and reply with the revised translation only."
