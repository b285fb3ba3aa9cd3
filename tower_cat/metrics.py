"""Reference-based evaluation: sacrebleu BLEU, chrF and TER (with their signatures) and, given a checkpoint, COMET.

``evaluate(hyps, refs, srcs=None, comet=None) -> Scores``. The sacrebleu metrics use sacrebleu's defaults, so
the numbers equal ``sacrebleu REF -i HYP -m bleu chrf ter`` on the same segments. ``read_segments`` reads the
inputs ``tower-cat evaluate`` accepts: plain text (one segment per line, as sacrebleu reads it), TMX, or any
bilingual file tower-cat loads (the targets; the sources too, for COMET).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tower_cat.errors import FormatError, TowerCatError


@dataclass
class Scores:
    """Corpus scores (0-100; TER lower is better) and the sacrebleu signature of each metric."""

    n: int
    bleu: float
    chrf: float
    ter: float
    signatures: dict[str, str] = field(default_factory=dict)
    comet: float | None = None  # system score x100
    comet_model: str | None = None
    comet_segments: list[float] | None = None  # x100, one per segment
    details: dict[str, str] = field(default_factory=dict)  # e.g. BLEU's verbose n-gram precisions

    def to_dict(self) -> dict[str, Any]:
        out = {"n": self.n, "bleu": self.bleu, "chrf": self.chrf, "ter": self.ter, "signatures": self.signatures,
               "details": self.details}
        if self.comet is not None:
            out.update(comet=self.comet, comet_model=self.comet_model, comet_segments=self.comet_segments)
        return out


def evaluate(hyps: Sequence[str], refs: Sequence[str], srcs: Sequence[str] | None = None, comet: Any = None, *,
             target_lang: str | None = None, comet_batch_size: int = 16, device: str = "auto") -> Scores:
    """Score hypotheses against one reference each.

    ``comet``: a COMET model folder (or a ``tower_cat.qe.CometBackend``); reference-based models use
    src+mt+ref, reference-free ones src+mt. ``target_lang`` picks sacrebleu's tokenizer for BLEU the way its
    ``-tl`` option does (zh, ja, ko); by default 13a, as the sacrebleu command without ``-tl``.
    """
    from sacrebleu.metrics import BLEU, CHRF, TER

    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise TowerCatError(f"{len(hyps)} hypotheses but {len(refs)} references: they must pair one to one")
    if srcs is not None and len(srcs) != len(hyps):
        raise TowerCatError(f"{len(srcs)} sources but {len(hyps)} hypotheses: they must pair one to one")
    if not hyps:
        raise TowerCatError("nothing to evaluate: no segments")
    bleu = BLEU(trg_lang=target_lang or "")
    chrf, ter = CHRF(), TER()
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    t = ter.corpus_score(hyps, [refs])
    scores = Scores(n=len(hyps), bleu=b.score, chrf=c.score, ter=t.score,
                    signatures={"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature()),
                                "ter": str(ter.get_signature())},
                    details={"bleu": b.format(score_only=False, signature="")})
    if comet is not None:
        from tower_cat.qe import CometBackend, QEItem

        backend = comet if isinstance(comet, CometBackend) else CometBackend(comet, batch_size=comet_batch_size,
                                                                             device=device)
        if srcs is None:
            raise TowerCatError("COMET needs the sources", param="sources",
                                hint="give the sources (or bilingual files with sources)")
        results = backend.score([QEItem(s, h, r) for s, h, r in zip(srcs, hyps, refs)])
        seg = [r.score for r in results]
        scores.comet_segments = seg
        raw = [r.raw["comet"] for r in results]
        scores.comet = 100.0 * sum(raw) / len(raw)
        scores.comet_model = backend.describe()
    return scores


def _try_load(path: Path):
    """A Document when some format module recognises the file; None for plain text."""
    from tower_cat import formats
    from tower_cat.errors import UnsupportedFormatError

    try:
        name = formats.detect(path)
    except UnsupportedFormatError:
        return None
    return formats.load(path, name)


def read_plain(path: str | Path) -> list[str]:
    """One segment per line, read exactly as the sacrebleu command reads it (split on \\n, trailing blanks off)."""
    with open(path, encoding="utf-8", newline="\n") as fh:
        return [line.rstrip() for line in fh]


def read_segments(path: str | Path) -> tuple[list[str], list[str] | None, list[str] | None]:
    """(targets, sources, unit ids) of a file: plain text gives (lines, None, None); a bilingual file or TMX
    gives the plain text of every unit's target (empty where untranslated) and source."""
    path = Path(path)
    if not path.is_file():
        raise FormatError("no such file", path=path)
    if path.suffix.lower() not in (".txt", ".gz"):
        doc = _try_load(path)
        if doc is not None:
            units = [u for u in doc.units if u.translatable]
            return ([u.target.text if u.target is not None else "" for u in units],
                    [u.source.text for u in units], [str(u.id) for u in units])
    return read_plain(path), None, None


def align(hyp_path: str | Path, ref_path: str | Path,
          src_path: str | Path | None = None) -> tuple[list[str], list[str], list[str] | None]:
    """hyps, refs, srcs from three files. Bilingual files with the same unit ids pair by id, otherwise by order;
    sources come from --src, else from the hypothesis file, else from the reference file."""
    hyps, hyp_src, hyp_ids = read_segments(hyp_path)
    refs, ref_src, ref_ids = read_segments(ref_path)
    if hyp_ids and ref_ids and hyp_ids != ref_ids and sorted(hyp_ids) == sorted(ref_ids) \
            and len(set(hyp_ids)) == len(hyp_ids):
        by_id = dict(zip(ref_ids, refs))
        refs = [by_id[i] for i in hyp_ids]
        if ref_src is not None:
            src_by_id = dict(zip(ref_ids, ref_src))
            ref_src = [src_by_id[i] for i in hyp_ids]
    if len(hyps) != len(refs):
        raise TowerCatError(f"{hyp_path} has {len(hyps)} segments but {ref_path} has {len(refs)}",
                            hint="hypotheses and references must pair one to one")
    srcs = None
    if src_path is not None:
        srcs_t, srcs_s, _ = read_segments(src_path)
        srcs = srcs_s if srcs_s is not None else srcs_t  # a bilingual --src file: its sources
        if len(srcs) != len(hyps):
            raise TowerCatError(f"{src_path} has {len(srcs)} segments but {hyp_path} has {len(hyps)}")
    else:
        srcs = hyp_src if hyp_src is not None else ref_src
    return hyps, refs, srcs
