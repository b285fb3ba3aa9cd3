"""QE reports: one self-contained HTML page (no external assets) and the same data as JSON/CSV.

The page shows, per file and in total, the score distribution (an inline SVG histogram drawn here), the worst
segments with source, target and error spans highlighted, QA/terminology issues found on units
(``unit.qa_issues``; ``tower-cat qe`` runs QA and, with ``--glossary``, term checks on every scored unit),
the word-weighted mean (each segment weighs its source words, counted as ``tower_cat.analysis`` counts them:
a long segment matters more than "OK"), terminology compliance, and download links for the data as CSV and JSON (embedded ``data:`` URIs, so the page
works from a mail attachment). ``write_report(path, docs)`` writes HTML, or JSON when the path ends in .json.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

BINS = 10  # histogram bins over 0-100


@dataclass
class Row:
    """One unit as the report shows it."""

    file: str
    unit: str
    source: str
    target: str
    score: float | None
    error_spans: list[tuple[int, int, str, str]] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    status: str | None = None
    below: bool = False  # under the threshold: marked for review
    scored: bool = False  # QE looked at it (False: protected, or scored by nobody)
    source_codes: list[tuple[int, str]] = field(default_factory=list)  # markup codes: (offset in text, label)
    target_codes: list[tuple[int, str]] = field(default_factory=list)
    words: int = 0  # source words (the weight of the segment in the word-weighted mean)
    terms_checked: int = 0  # glossary term occurrences checked in this unit / of them translated as required
    terms_ok: int = 0


def _issue_text(issue: Any) -> str:
    if isinstance(issue, str):
        return issue
    if isinstance(issue, dict):
        parts = [str(issue.get(k)) for k in ("severity", "kind", "check", "message") if issue.get(k)]
        return ": ".join(parts) or json.dumps(issue, ensure_ascii=False, default=str)
    for attr in ("message", "text", "description"):
        msg = getattr(issue, attr, None)
        if msg:
            kind = getattr(issue, "kind", None) or getattr(issue, "check", None) or getattr(issue, "code", None)
            sev = getattr(issue, "severity", None)
            prefix = ": ".join(str(p) for p in (sev, kind) if p)
            return f"{prefix}: {msg}" if prefix else str(msg)
    return str(issue)


def _code_label(code) -> str:
    label = code.display or code.xml or code.id
    return label if len(label) <= 24 else label[:23] + "…"


def segment_view(segment) -> tuple[str, list[tuple[int, str]]]:
    """(text as QE saw it, markup codes as (offset, label)): codes are shown but not part of the text."""
    from tower_cat.qe import segment_text

    if segment is None:
        return "", []
    codes: list[tuple[int, str]] = []
    pos = 0
    for part in segment.parts:
        if isinstance(part, str):
            pos += len(part)
        elif part.xml and not part.xml.lstrip().startswith("<"):
            pos += len(part.xml)
        else:
            codes.append((pos, _code_label(part)))
    return segment_text(segment), codes


def rows_from_document(doc, threshold: float | None = None, name: str | None = None) -> list[Row]:
    """Rows for every unit that has a target, a QE score or an issue, in file order."""
    name = name or Path(str(doc.path)).name
    rows = []
    for unit in doc.units:
        qe = unit.meta.get("qe") if isinstance(unit.meta, dict) else None
        score = unit.qe_score
        if qe and qe.get("score") is not None and score is None:
            score = qe["score"]
        spans = [tuple(s) for s in (qe or {}).get("error_spans", [])]
        issues = [_issue_text(i) for i in unit.qa_issues]
        if not unit.has_target and score is None and not issues:
            continue
        status = unit.edit.status if unit.edit is not None else unit.state
        below = threshold is not None and (score is None and qe is not None or score is not None and score < threshold)
        src, src_codes = segment_view(unit.source)
        tgt, tgt_codes = segment_view(unit.target)
        terms = unit.meta.get("terms") if isinstance(unit.meta, dict) else None
        rows.append(Row(name, str(unit.id), src, tgt, None if score is None else float(score), spans, issues,
                        status, bool(below), qe is not None, src_codes, tgt_codes, count_words(unit.source.text),
                        int(terms["checked"]) if terms else 0, int(terms["ok"]) if terms else 0))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Statistics and the SVG histogram


def histogram(scores: Sequence[float], bins: int = BINS) -> list[int]:
    counts = [0] * bins
    for s in scores:
        counts[min(bins - 1, max(0, int(s * bins // 100)))] += 1
    return counts


def stats(scores: Sequence[float], words: Sequence[int] | None = None) -> dict[str, Any]:
    """n, mean, median, min, max and, with ``words`` (one per score), the word-weighted mean and the words."""
    if not scores:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None, "weighted_mean": None, "words": 0}
    ordered = sorted(scores)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    out = {"n": n, "mean": sum(ordered) / n, "median": median, "min": ordered[0], "max": ordered[-1],
           "weighted_mean": None, "words": 0}
    if words is not None:
        out.update(weighted_mean=weighted_mean(scores, words), words=int(sum(words)))
    return out


def weighted_mean(scores: Sequence[float], words: Sequence[int]) -> float | None:
    """Mean of the scores, each weighted by its segment's source words (a segment without words weighs 1, so a
    file of numbers-only segments still has a mean)."""
    weights = [max(1, int(w)) for w in words]
    total = sum(weights)
    return sum(s * w for s, w in zip(scores, weights)) / total if scores else None


def count_words(text: str) -> int:
    from tower_cat.analysis import count_words as _count

    return _count(text)


def _terms(rows: Sequence[Row]) -> dict[str, Any]:
    checked, ok = sum(r.terms_checked for r in rows), sum(r.terms_ok for r in rows)
    return {"checked": checked, "ok": ok, "compliance": round(100.0 * ok / checked, 1) if checked else None}


def histogram_svg(scores: Sequence[float], *, threshold: float | None = None, title: str = "",
                  width: int = 420, height: int = 180) -> str:
    """An inline SVG bar chart of scores in 10-point bins, with the threshold as a dashed red line."""
    from markupsafe import escape

    counts = histogram(scores)
    left, right, top, bottom = 34, 8, 18, 30
    pw, ph = width - left - right, height - top - bottom
    peak = max(counts) or 1
    bw = pw / len(counts)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="histogram" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title or "score histogram")}">',
           f'<title>{escape(title or "score histogram")}: {len(scores)} scored segments</title>',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    ticks = sorted({0, peak // 2, peak} if peak >= 4 else {0, peak})
    for tick in ticks:  # horizontal grid + y labels
        y = top + ph - tick / peak * ph
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#dddddd"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#555">'
                   f'{tick}</text>')
    for i, c in enumerate(counts):
        lo = i * 100 // len(counts)
        h = c / peak * ph
        x = left + i * bw
        color = "#d9534f" if threshold is not None and lo + 100 / len(counts) <= threshold else "#4a7bd0"
        out.append(f'<rect class="bar" x="{x + 1:.1f}" y="{top + ph - h:.1f}" width="{bw - 2:.1f}" '
                   f'height="{h:.1f}" fill="{color}" data-count="{c}"><title>{lo}-{lo + 100 // len(counts)}: '
                   f'{c}</title></rect>')
        if c:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph - h - 3:.1f}" font-size="10" '
                       f'text-anchor="middle" fill="#333">{c}</text>')
    for i in range(0, len(counts) + 1, 2):
        x = left + i * bw
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle" '
                   f'fill="#555">{i * 100 // len(counts)}</text>')
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>')
    if threshold is not None:
        x = left + max(0.0, min(100.0, threshold)) / 100 * pw
        out.append(f'<line class="threshold" x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{top + ph}" '
                   f'stroke="#c00" stroke-width="2" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x + 3:.1f}" y="{top - 6}" font-size="10" fill="#c00">threshold {threshold:g}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" font-size="10" text-anchor="middle" '
               f'fill="#555">QE score</text>')
    out.append("</svg>")
    return "".join(out)


def highlight(text: str, spans: Iterable[Sequence[Any]],
              codes: Iterable[Sequence[Any]] = ()) -> list[tuple[str, str | None, bool]]:
    """Split text into (fragment, severity or None, is_code) pieces: error spans marked (overlaps: the first
    wins), markup codes inserted at their offsets as code pieces."""
    marks: list[str | None] = [None] * len(text)
    for span in spans:
        start, end, severity = int(span[0]), int(span[1]), str(span[2])
        for i in range(max(0, start), min(len(text), end)):
            if marks[i] is None:
                marks[i] = severity
    at: dict[int, list[str]] = {}
    for offset, label in codes:
        at.setdefault(min(max(0, int(offset)), len(text)), []).append(str(label))
    pieces: list[tuple[str, str | None, bool]] = []
    for i in range(len(text) + 1):
        for label in at.get(i, []):
            pieces.append((label, None, True))
        if i == len(text):
            break
        ch, m = text[i], marks[i]
        if pieces and not pieces[-1][2] and pieces[-1][1] == m:
            pieces[-1] = (pieces[-1][0] + ch, m, False)
        else:
            pieces.append((ch, m, False))
    return pieces


# ---------------------------------------------------------------------------------------------------------
# Data exports


CSV_FIELDS = ("file", "unit", "score", "below_threshold", "status", "source", "target", "error_spans", "issues",
              "words")


def to_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in rows:
        w.writerow([r.file, r.unit, "" if r.score is None else f"{r.score:.2f}", "yes" if r.below else "no",
                    r.status or "", r.source, r.target,
                    "; ".join(f"{s[3]!r} {s[2]} [{s[0]}:{s[1]}]" for s in r.error_spans), " | ".join(r.issues),
                    r.words])
    return buf.getvalue()


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1, default=str)


def _data_uri(text: str, mime: str) -> str:
    return f"data:{mime};charset=utf-8;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")


def report_data(docs: Sequence[Any], *, threshold: float | None = None, backend: str | None = None,
                title: str = "tower-cat QE report", worst: int = 50) -> dict[str, Any]:
    """Everything the report shows, as plain data (this is the JSON export)."""
    files = []
    all_rows: list[Row] = []
    names_seen: dict[str, int] = {}
    for doc in docs:
        name = Path(str(doc.path)).name
        if name in names_seen:  # two files with one name from different folders
            names_seen[name] += 1
            name = f"{name} ({names_seen[name]})"
        else:
            names_seen[name] = 1
        rows = rows_from_document(doc, threshold, name)
        scores = [r.score for r in rows if r.score is not None]
        words = [r.words for r in rows if r.score is not None]
        files.append({"name": name, "path": str(doc.path), "format": doc.format, "source_lang": doc.source_lang,
                      "target_lang": doc.target_lang, "units": len(doc.units), "stats": stats(scores, words),
                      "terms": _terms(rows),
                      "histogram": histogram(scores), "below": sum(r.below for r in rows),
                      "unscored": sum(1 for r in rows if r.scored and r.score is None),
                      "issues": sum(len(r.issues) for r in rows)})
        all_rows.extend(rows)
    scores = [r.score for r in all_rows if r.score is not None]
    words = [r.words for r in all_rows if r.score is not None]
    ranked = sorted((r for r in all_rows if r.score is not None), key=lambda r: (r.score, r.file, r.unit))
    return {
        "title": title,
        "generated": _dt.datetime.now().replace(microsecond=0).isoformat(),
        "backend": backend,
        "threshold": threshold,
        "total": {"files": len(files), "stats": stats(scores, words), "histogram": histogram(scores),
                  "terms": _terms(all_rows),
                  "below": sum(r.below for r in all_rows), "issues": sum(len(r.issues) for r in all_rows),
                  "unscored": sum(1 for r in all_rows if r.scored and r.score is None)},
        "files": files,
        "worst": [asdict(r) for r in ranked[:worst]],
        "rows": [asdict(r) for r in all_rows],
    }


def render_html(data: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("tower_cat", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    # PO ids join msgctxt and msgid with EOT (\x04); show it, and other control characters, visibly.
    env.filters["visible"] = lambda v: "".join(" ▸ " if c == "\x04" else c if c >= " " or c in "\n\t" else "\ufffd"
                                               for c in str(v))
    rows = [Row(**r) for r in data["rows"]]
    threshold = data["threshold"]
    total_scores = [r.score for r in rows if r.score is not None]
    file_scores = {f["name"]: [r.score for r in rows if r.file == f["name"] and r.score is not None]
                   for f in data["files"]}
    from markupsafe import Markup

    svg_total = Markup(histogram_svg(total_scores, threshold=threshold, title="All files"))
    svg_files = {name: Markup(histogram_svg(s, threshold=threshold, title=name)) for name, s in file_scores.items()}
    worst = [dict(r, pieces=highlight(r["target"], r["error_spans"], r["target_codes"]),
                  source_pieces=highlight(r["source"], [], r["source_codes"])) for r in data["worst"]]
    issue_rows = [r for r in rows if r.issues]
    return env.get_template("qe_report.html.j2").render(
        data=data, svg_total=svg_total, svg_files=svg_files, worst=worst, issue_rows=issue_rows,
        csv_uri=_data_uri(to_csv(rows), "text/csv"), json_uri=_data_uri(to_json(data), "application/json"))


def write_report(path: str | Path, docs: Sequence[Any], *, threshold: float | None = None,
                 backend: str | None = None, title: str = "tower-cat QE report", worst: int = 50) -> Path:
    """Write the report (HTML; JSON when ``path`` ends in .json; CSV when it ends in .csv) atomically."""
    from tower_cat.formats._xml import atomic_write

    path = Path(path)
    data = report_data(docs, threshold=threshold, backend=backend, title=title, worst=worst)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = to_json(data)
    elif suffix == ".csv":
        text = to_csv([Row(**r) for r in data["rows"]])
    else:
        text = render_html(data)
    atomic_write(path, text.encode("utf-8"))
    return path
