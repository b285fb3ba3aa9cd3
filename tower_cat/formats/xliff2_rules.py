"""XLIFF 2 validation: the core and module schemas and the processing requirements they cannot express.

The OASIS XSDs and Schematron are test oracles only (they are not shipped), so the constraints are written out
here: per element, the allowed attributes with their value types, the required ones, whether foreign attributes
are accepted, and the content model (children, order, cardinality) as a regular expression over the children's
names. Module elements are checked against their own schemas and the places the spec allows them; module
attributes against the elements they may appear on. The processing requirements (ids unique in their scope,
references that must resolve, fragment identifiers, sc/ec attribute agreement, non-removable codes, target
order, comment annotations, copyOf, subFlows, glossary, matches, metadata, size-restriction, validation, change
tracking, resource data, format style) follow the section numbers of XLIFF 2.2.

Every finding goes to ``report(severity, message, element, unit_id)``; the loader turns them into
:class:`~tower_cat.document.Issue`. Everything is one pass over the tree plus per-unit index dictionaries, so the
cost is linear in the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from tower_cat.formats._xml import XML_NS

NS20 = "urn:oasis:names:tc:xliff:document:2.0"
NS22 = "urn:oasis:names:tc:xliff:document:2.2"
MTC = "urn:oasis:names:tc:xliff:matches:2.0"
GLS = "urn:oasis:names:tc:xliff:glossary:2.0"
MDA = "urn:oasis:names:tc:xliff:metadata:2.0"
FS = "urn:oasis:names:tc:xliff:fs:2.0"
RES = "urn:oasis:names:tc:xliff:resourcedata:2.0"
CTR = "urn:oasis:names:tc:xliff:changetracking:2.0"
SLR = "urn:oasis:names:tc:xliff:sizerestriction:2.0"
VAL = "urn:oasis:names:tc:xliff:validation:2.0"
ITS = "http://www.w3.org/2005/11/its"
ITSM = "urn:oasis:names:tc:xliff:itsm:2.1"
PGS = "urn:oasis:names:tc:xliff:pgs:1.0"

PREFIX_OF = {MTC: "mtc", GLS: "gls", MDA: "mda", FS: "fs", RES: "res", CTR: "ctr", SLR: "slr", VAL: "val",
             ITS: "its", ITSM: "itsm", PGS: "pgs"}
MODULE_NAMESPACES = frozenset(PREFIX_OF)
XML_LANG = f"{{{XML_NS}}}lang"
XML_SPACE = f"{{{XML_NS}}}space"
XML_ID = f"{{{XML_NS}}}id"

Report = Callable[[str, str, "etree._Element | None", "str | None"], None]

# ------------------------------------------------------------------------------------------- value types

_NAME_START = ("A-Za-z_:\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c\u200d"
               "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff")
_NAME_CHAR = _NAME_START + r"\-.0-9\u00b7\u0300-\u036f\u203f-\u2040"
NMTOKEN = re.compile(f"[{_NAME_CHAR}]+")
_QNAME = re.compile(f"[{_NAME_START}][{_NAME_CHAR}]*")  # an attribute name, prefix allowed
# xs:language, with BCP 47's primary subtag (2-8 letters, or the x-/i- singletons): srcLang="e" is refused
_LANGUAGE = re.compile(r"(?:[a-zA-Z]{2,8}|[xXiI])(?:-[a-zA-Z0-9]{1,8})*")
_USER_DEFINED = re.compile(r"[^\s:]+:[^\s:]+")
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() also accepts "²", which int() refuses
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_HEX = re.compile(r"([0-9a-fA-F]{2})*")
_SIZE_RESTRICTION = re.compile(r"(?:\*|\d+|\d+,(?:\d+|\*))")
# <cp> is for what XML 1.0 cannot carry (and the discouraged C1 controls and surrogates): Schematron F25
_CP_ALLOWED = re.compile(r"000[0-8]|000[bBcCeEfF]|001[0-9a-fA-F]|007[fF]|008[0-46-9a-fA-F]|009[0-9a-fA-F]"
                         r"|[dD][89a-fA-F][0-9a-fA-F]{2}|[fF]{3}[eEfF]")


def _enum(*values: str):
    allowed = frozenset(values)
    return lambda v: None if v in allowed else f"must be one of {', '.join(values)}"


def _nmtoken(v: str) -> str | None:
    return None if NMTOKEN.fullmatch(v) else "must be an NMTOKEN (letters, digits, '.', '-', '_', ':')"


def _nmtokens(v: str) -> str | None:
    return None if v.strip() and all(NMTOKEN.fullmatch(t) for t in v.split()) else \
        "must be a space-separated list of NMTOKENs"


def _language(v: str) -> str | None:
    return None if _LANGUAGE.fullmatch(v) else "must be a language tag (BCP 47, e.g. en-US)"


def _user_defined(v: str) -> str | None:
    return None if _USER_DEFINED.fullmatch(v) else "must be a user-defined value 'prefix:value'"


def _positive_integer(v: str) -> str | None:
    return None if _DIGITS.fullmatch(v.strip()) and int(v) > 0 else "must be a positive integer"


def _integer(v: str) -> str | None:
    return None if re.fullmatch(r"\s*[+-]?\d+\s*", v) else "must be an integer"


def _range(lo: float, hi: float):
    def check(v: str) -> str | None:
        s = v.strip()
        if _DECIMAL.fullmatch(s) or (re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+", s)):
            if lo <= float(s) <= hi:
                return None
        return f"must be a number from {lo:g} to {hi:g}"
    return check


def _priority(v: str) -> str | None:
    return None if _DIGITS.fullmatch(v.strip()) and 1 <= int(v) <= 10 else "must be an integer from 1 to 10"


def _hex_binary(v: str) -> str | None:
    return None if _HEX.fullmatch(v) else "must be hexadecimal"


def _mrk_type(v: str) -> str | None:
    return None if v in ("generic", "comment", "term") or _USER_DEFINED.fullmatch(v) else \
        "must be generic, comment, term or a user-defined 'prefix:value'"


def _size_restriction(v: str) -> str | None:
    return None if _SIZE_RESTRICTION.fullmatch(v.strip()) else "must be '*', 'N', 'N,M' or 'N,*' with integers"


def _non_negative_integer(v: str) -> str | None:
    return None if _DIGITS.fullmatch(v.strip()) else "must be a non-negative integer"


STRING = None  # any value
YES_NO = _enum("yes", "no")
YES_NO_FIRST_NO = _enum("yes", "firstNo", "no")
DIR = _enum("ltr", "rtl", "auto")
APPLIES_TO = _enum("source", "target")
CODE_TYPE = _enum("fmt", "ui", "quote", "link", "image", "other")
STATE = _enum("initial", "translated", "reviewed", "final")
NORMALIZATION = _enum("none", "nfc", "nfd")
SIMILARITY = _range(0, 100)
CONFIDENCE = _range(0, 1)

# ------------------------------------------------------------------------------------------- element specs


@dataclass(frozen=True)
class Spec:
    """One element's schema: ``content`` is a regex over the children's tokens, each followed by a space (core
    children by local name, module elements as ``prefix:name``, other namespaces as ``#ext``)."""

    attrs: dict
    required: frozenset = frozenset()
    content: str = ""
    mixed: bool = False
    other_attrs: bool = False  # xs:anyAttribute namespace="##other"
    order_warning: tuple = ()  # children whose misplacement is a warning (real exporters write them so)

    @property
    def pattern(self) -> re.Pattern:
        return _compiled(self.content)


_PATTERNS: dict[str, re.Pattern] = {}


def _compiled(content: str) -> re.Pattern:
    p = _PATTERNS.get(content)
    if p is None:
        p = _PATTERNS[content] = re.compile(content)
    return p


OTHER = r"(?:(?:#ext|\w+:\w+) )"  # xs:any namespace="##other" (module elements are placed by MODULE_PLACES)
ANY = r"(?:\S+ )"  # ##other inside a module element: XLIFF core elements count as "other" there too
INLINE = r"(?:(?:cp|ph|pc|sc|ec|mrk|sm|em) )*"
CODE_COMMON = {"canCopy": YES_NO, "canDelete": YES_NO, "canReorder": YES_NO_FIRST_NO, "copyOf": _nmtoken,
               "subType": _user_defined, "type": CODE_TYPE}
DIR_ATTRS = {"srcDir": DIR, "trgDir": DIR}


def core_specs(core: str) -> dict[str, Spec]:
    v22 = core == NS22
    xliff_content = r"(?:notes )?(?:mda:metadata )?(?:file )+" if v22 else r"(?:file )+"
    note_attrs = {"id": _nmtoken, "appliesTo": APPLIES_TO, "category": STRING, "priority": _priority}
    if v22:
        note_attrs["ref"] = STRING
    return {
        "xliff": Spec({"version": _enum("2.0", "2.1", "2.2") if v22 else STRING, "srcLang": _language,
                       "trgLang": _language, "xml:space": _enum("default", "preserve")},
                      frozenset({"version", "srcLang"}), xliff_content, other_attrs=True),
        "file": Spec({"id": _nmtoken, "canResegment": YES_NO, "original": STRING, "translate": YES_NO, **DIR_ATTRS,
                      "xml:space": _enum("default", "preserve")}, frozenset({"id"}),
                     rf"(?:skeleton )?{OTHER}*(?:notes )?(?:(?:unit|group) )+", other_attrs=True,
                     order_warning=("skeleton",)),
        "skeleton": Spec({"href": STRING}, content=rf"{OTHER}*", mixed=True),
        "group": Spec({"id": _nmtoken, "name": STRING, "canResegment": YES_NO, "translate": YES_NO, **DIR_ATTRS,
                       "type": _user_defined, "xml:space": _enum("default", "preserve")}, frozenset({"id"}),
                      rf"{OTHER}*(?:notes )?(?:(?:unit|group) )*", other_attrs=True),
        "unit": Spec({"id": _nmtoken, "name": STRING, "canResegment": YES_NO, "translate": YES_NO, **DIR_ATTRS,
                      "type": _user_defined, "xml:space": _enum("default", "preserve")}, frozenset({"id"}),
                     rf"{OTHER}*(?:notes )?(?:originalData )?(?:(?:segment|ignorable) )+", other_attrs=True,
                     order_warning=("originalData",)),
        "segment": Spec({"id": _nmtoken, "canResegment": YES_NO, "state": STATE, "subState": STRING},
                        content=r"source (?:target )?"),
        "ignorable": Spec({"id": _nmtoken}, content=r"source (?:target )?"),
        "notes": Spec({}, content=r"(?:note )+"),
        "note": Spec(note_attrs, mixed=True, other_attrs=True),
        "originalData": Spec({}, content=r"(?:data )+"),
        "data": Spec({"id": _nmtoken, "dir": DIR, "xml:space": _enum("preserve")}, frozenset({"id"}),
                     r"(?:cp )*", mixed=True),
        "source": Spec({"xml:lang": _language, "xml:space": _enum("default", "preserve")}, content=INLINE,
                       mixed=True),
        "target": Spec({"xml:lang": _language, "xml:space": _enum("default", "preserve"),
                        "order": _positive_integer}, content=INLINE, mixed=True),
        "cp": Spec({"hex": _hex_binary}, frozenset({"hex"})),
        "ph": Spec({**CODE_COMMON, "disp": STRING, "equiv": STRING, "id": _nmtoken, "dataRef": _nmtoken,
                    "subFlows": _nmtokens}, frozenset({"id"}), other_attrs=True),
        "pc": Spec({**CODE_COMMON, "canOverlap": YES_NO, "dispEnd": STRING, "dispStart": STRING,
                    "equivEnd": STRING, "equivStart": STRING, "id": _nmtoken, "dataRefEnd": _nmtoken,
                    "dataRefStart": _nmtoken, "subFlowsEnd": _nmtokens, "subFlowsStart": _nmtokens, "dir": DIR},
                   frozenset({"id"}), INLINE, mixed=True, other_attrs=True),
        "sc": Spec({**CODE_COMMON, "canOverlap": YES_NO, "dataRef": _nmtoken, "dir": DIR, "disp": STRING,
                    "equiv": STRING, "id": _nmtoken, "isolated": YES_NO, "subFlows": _nmtokens},
                   frozenset({"id"}), other_attrs=True),
        "ec": Spec({**CODE_COMMON, "canOverlap": YES_NO, "dataRef": _nmtoken, "dir": DIR, "disp": STRING,
                    "equiv": STRING, "id": _nmtoken, "isolated": YES_NO, "startRef": _nmtoken,
                    "subFlows": _nmtokens}, other_attrs=True),
        "mrk": Spec({"id": _nmtoken, "translate": YES_NO, "type": _mrk_type, "ref": STRING, "value": STRING},
                    frozenset({"id"}), INLINE, mixed=True, other_attrs=True),
        "sm": Spec({"id": _nmtoken, "translate": YES_NO, "type": _mrk_type, "ref": STRING, "value": STRING},
                   frozenset({"id"}), other_attrs=True),
        "em": Spec({"startRef": _nmtoken}, frozenset({"startRef"})),
    }


MODULE_SPECS: dict[tuple[str, str], Spec] = {
    (MTC, "matches"): Spec({}, content=r"(?:mtc:match )+"),
    (MTC, "match"): Spec({"id": _nmtoken, "matchQuality": SIMILARITY, "matchSuitability": SIMILARITY,
                          "origin": STRING, "ref": STRING, "reference": YES_NO, "similarity": SIMILARITY,
                          "subType": _user_defined, "type": _enum("am", "mt", "icm", "idm", "tb", "tm", "other")},
                         frozenset({"ref"}), rf"(?:mda:metadata )?(?:originalData )?source target {OTHER}*",
                         other_attrs=True),
    (GLS, "glossary"): Spec({}, content=r"(?:gls:glossEntry )+"),
    (GLS, "glossEntry"): Spec({"id": _nmtoken, "ref": STRING},
                              content=rf"gls:term (?:gls:translation )*(?:gls:definition )?{OTHER}*",
                              other_attrs=True),
    (GLS, "term"): Spec({"source": STRING}, mixed=True, other_attrs=True),
    (GLS, "translation"): Spec({"id": _nmtoken, "ref": STRING, "source": STRING}, mixed=True, other_attrs=True),
    (GLS, "definition"): Spec({"source": STRING}, mixed=True, other_attrs=True),
    (MDA, "metadata"): Spec({"id": _nmtoken}, content=r"(?:mda:metaGroup )+"),
    (MDA, "metaGroup"): Spec({"id": _nmtoken, "category": STRING,
                              "appliesTo": _enum("source", "target", "ignorable")},
                             content=r"(?:mda:(?:metaGroup|meta) )+"),
    (MDA, "meta"): Spec({"type": STRING}, frozenset({"type"}), mixed=True),
    (SLR, "profiles"): Spec({"generalProfile": STRING, "storageProfile": STRING},
                            content=rf"(?:slr:normalization )?{OTHER}*"),
    (SLR, "normalization"): Spec({"general": NORMALIZATION, "storage": NORMALIZATION}),
    (SLR, "data"): Spec({"profile": STRING}, frozenset({"profile"}), rf"{OTHER}*", other_attrs=True),
    (VAL, "validation"): Spec({}, content=r"(?:val:rule )+", other_attrs=True),
    (VAL, "rule"): Spec({"isPresent": STRING, "occurs": _positive_integer, "isNotPresent": STRING,
                         "startsWith": STRING, "endsWith": STRING, "existsInSource": YES_NO,
                         "caseSensitive": YES_NO, "normalization": NORMALIZATION, "disabled": YES_NO},
                        other_attrs=True),
    (RES, "resourceData"): Spec({}, content=r"(?:res:resourceItemRef )*(?:res:resourceItem )*"),
    (RES, "resourceItemRef"): Spec({"id": _nmtoken, "ref": _nmtoken}, frozenset({"ref"}), other_attrs=True),
    (RES, "resourceItem"): Spec({"mimeType": STRING, "id": _nmtoken, "context": YES_NO},
                                content=r"(?:notes )?(?:res:source )?(?:res:target )?(?:res:reference )*",
                                other_attrs=True),
    (RES, "source"): Spec({"href": STRING, "xml:lang": _language}, content=rf"{ANY}*", other_attrs=True),
    (RES, "target"): Spec({"href": STRING, "xml:lang": _language}, content=rf"{ANY}*", other_attrs=True),
    (RES, "reference"): Spec({"href": STRING, "xml:lang": _language}, frozenset({"href"}), other_attrs=True),
    (CTR, "changeTrack"): Spec({}, content=r"(?:ctr:revisions )+"),
    (CTR, "revisions"): Spec({"appliesTo": _nmtoken, "ref": _nmtoken, "currentVersion": _nmtoken},
                             frozenset({"appliesTo"}), rf"(?:ctr:revision )+{OTHER}*", other_attrs=True),
    (CTR, "revision"): Spec({"author": STRING, "datetime": STRING, "version": _nmtoken},
                            content=rf"(?:ctr:item )+{OTHER}*", other_attrs=True),
    (CTR, "item"): Spec({"property": STRING}, frozenset({"property"}), mixed=True, other_attrs=True),
    (ITS, "locQualityIssues"): Spec({"xml:id": _nmtoken, "version": STRING}, frozenset({"xml:id"}),
                                    r"(?:its:locQualityIssue )+"),
    (ITS, "locQualityIssue"): Spec({"version": STRING, "locQualityIssueType": STRING,
                                    "locQualityIssueComment": STRING, "locQualityIssueSeverity": STRING,
                                    "locQualityIssueProfileRef": STRING, "locQualityIssueEnabled": STRING}),
    (ITS, "provenanceRecords"): Spec({"xml:id": _nmtoken, "version": STRING}, frozenset({"xml:id"}),
                                     r"(?:its:provenanceRecord )+"),
    (ITS, "provenanceRecord"): Spec({n: STRING for n in (
        "version", "org", "orgRef", "person", "personRef", "revOrg", "revOrgRef", "revPerson", "revPersonRef",
        "revTool", "revToolRef", "tool", "toolRef", "provenanceRecordsRef")}),
}

# where module elements may stand (parent: core local name, or (namespace, name) of a module element)
_STRUCTURAL = frozenset({"file", "group", "unit"})
MODULE_PLACES: dict[tuple[str, str], frozenset] = {
    (MTC, "matches"): frozenset({"unit"}),
    (GLS, "glossary"): frozenset({"unit"}),
    (MDA, "metadata"): frozenset({"xliff", "file", "group", "unit", (MTC, "match")}),
    (RES, "resourceData"): frozenset({"file", "unit"}),
    (SLR, "profiles"): frozenset({"file"}),
    (SLR, "data"): _STRUCTURAL,
    (VAL, "validation"): _STRUCTURAL,
    (CTR, "changeTrack"): _STRUCTURAL,
    (ITS, "locQualityIssues"): _STRUCTURAL,
    (ITS, "provenanceRecords"): _STRUCTURAL,
}

# module attributes: name -> (value check, elements allowed on; "ec*" = only an isolated <ec>)
_FS_ON = frozenset({"file", "group", "unit", "note", "ph", "pc", "sc", "ec*", "mrk", "sm", (RES, "source"),
                    (RES, "target"), (RES, "reference"), (GLS, "glossEntry"), (GLS, "term"), (GLS, "translation"),
                    (GLS, "definition")})
_SLR_ON = frozenset({"file", "group", "unit", "ph", "pc", "sc", "ec*", "mrk", "sm"})
_ITS_ANY = frozenset({"xliff", "file", "group", "unit", "mrk", "sm", "note", (MTC, "match"), (GLS, "glossEntry"),
                      (GLS, "term"), (GLS, "translation"), (GLS, "definition")})
FS_ELEMENTS = ("a b bdo big blockquote body br button caption center cite code col colgroup dd del div dl dt em "
               "h1 h2 h3 h4 h5 h6 head hr html i img label legend li ol p pre q s samp select small span strike "
               "strong sub sup table tbody td tfoot th thead title tr tt u ul").split()
MODULE_ATTRS: dict[str, dict[str, tuple]] = {
    FS: {"fs": (_enum(*FS_ELEMENTS), _FS_ON), "subFs": (STRING, _FS_ON)},
    SLR: {"sizeRestriction": (_size_restriction, _SLR_ON), "storageRestriction": (_size_restriction, _SLR_ON),
          "sizeInfo": (STRING, _SLR_ON), "sizeInfoRef": (_nmtoken, _SLR_ON),
          "equivStorage": (_non_negative_integer, frozenset({"ph", "pc", "sc", "ec*"}))},
    PGS: {"switch": (STRING, frozenset({"unit"})), "case": (STRING, frozenset({"segment"}))},
    ITSM: {"domains": (STRING, _ITS_ANY), "lang": (_language, _ITS_ANY)},
    ITS: {n: (t, _ITS_ANY) for n, t in {
        "version": STRING, "allowedCharacters": STRING, "annotatorsRef": STRING, "localeFilterList": STRING,
        "localeFilterType": _enum("include", "exclude"), "locQualityIssueComment": STRING,
        "locQualityIssueEnabled": YES_NO, "locQualityIssueProfileRef": STRING, "locQualityIssuesRef": STRING,
        "locQualityIssueSeverity": SIMILARITY,
        "locQualityIssueType": _enum(*"""terminology mistranslation omission untranslated addition duplication
            inconsistency grammar legal register locale-specific-content locale-violation style characters
            misspelling typographical formatting inconsistent-entities numbers markup pattern-problem whitespace
            internationalization length non-conformance uncategorized other""".split()),
        "locQualityRatingProfileRef": STRING, "locQualityRatingScore": SIMILARITY,
        "locQualityRatingScoreThreshold": SIMILARITY, "locQualityRatingVote": _integer,
        "locQualityRatingVoteThreshold": _integer, "mtConfidence": CONFIDENCE, "org": STRING, "orgRef": STRING,
        "person": STRING, "personRef": STRING, "provenanceRecordsRef": STRING, "revOrg": STRING,
        "revOrgRef": STRING, "revPerson": STRING, "revPersonRef": STRING, "revTool": STRING, "revToolRef": STRING,
        "taClassRef": STRING, "taConfidence": CONFIDENCE, "taIdent": STRING, "taIdentRef": STRING,
        "taSource": STRING, "termConfidence": CONFIDENCE, "tool": STRING, "toolRef": STRING,
        "term": YES_NO, "termInfoRef": STRING, "translate": YES_NO, "locNote": STRING, "locNoteType": STRING,
        "domain": STRING, "lang": _language}.items()},
}
# extension (non-module) attributes are allowed only on these (core 2.2 section 4.9 "Extensibility")
EXTENSION_ATTRS_ON = frozenset({"xliff", "file", "group", "unit", "note", "mrk", "sm"})

_RESERVED_SUBTYPES = {"xlf:lb": "fmt", "xlf:pb": "fmt", "xlf:b": "fmt", "xlf:i": "fmt", "xlf:u": "fmt",
                      "xlf:var": "ui"}
_CODES = ("ph", "pc", "sc", "ec")
_CORE_FRAGID = frozenset({"f", "g", "u", "n", "d", "t"})
# Fragment-identifier prefixes of extensions (XLIFF 2 lets extensions register one for their namespace; tools
# know them by registration, not from the document). A deployment may add its own.
EXTENSION_FRAGID_PREFIXES = {"tbx": "urn:iso:std:iso:30042:ed-1:v1:en"}
_MODULE_FRAGID = {"mtc": MTC, "gls": GLS, "mda": MDA, "res": RES, "ctr": CTR, "slr": SLR, "val": VAL, "its": ITS}


# A reference into a target that no longer has the span: targets are rewritten by every translation step (ours
# included), so a candidate or glossary entry pointing at a re-translated target span is stale, not corrupt.
STALE_TARGET = "(stale) "


@dataclass
class _UnitIndex:
    """The ids a fragment identifier or reference can point at inside one <unit>."""

    segment_level: dict = field(default_factory=dict)  # segment/ignorable ids and inline ids in sources
    target_inline: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)


class Checker:
    """Runs every check over one parsed document; see the module docstring."""

    def __init__(self, root: etree._Element, core: str, report: Report, src_lang: str | None,
                 trg_lang: str | None):
        self.root = root
        self.core = core
        self.cp = "{" + core + "}"
        self.report = report
        self.src_lang = src_lang
        self.trg_lang = trg_lang
        self.specs = core_specs(core)
        self._unit_of: dict = {}
        self._unit_index: dict = {}
        self._tags: dict = {}

    # -- helpers
    def is_core(self, el, name: str | None = None) -> bool:
        tag = el.tag
        return isinstance(tag, str) and tag.startswith(self.cp) and (name is None or tag == self.cp + name)

    def unit_id(self, el) -> str | None:
        for a in el.iterancestors():
            if self.is_core(a, "unit"):
                return a.get("id")
        return el.get("id") if self.is_core(el, "unit") else None

    def error(self, message: str, el) -> None:
        self.report("error", message, el, self.unit_id(el) if el is not None else None)

    def warn(self, message: str, el) -> None:
        self.report("warning", message, el, self.unit_id(el) if el is not None else None)

    def name_of(self, el) -> str:
        ns, local = _split(el.tag)
        if ns == self.core:
            return local
        return f"{PREFIX_OF.get(ns, '{' + ns + '}')}:{local}" if ns else local

    def key_of(self, el):
        ns, local = _split(el.tag)
        return local if ns == self.core else (ns, local)

    # -- entry point
    def run(self) -> None:
        """One pass over the elements (structure, scopes, module rules), then one per unit."""
        units: list = []
        profiles_declared = self.root.find(f".//{{{SLR}}}profiles") is not None
        core_unit, core_notes, core_skeleton = self.cp + "unit", self.cp + "notes", self.cp + "skeleton"
        holders = (self.cp + "file", self.cp + "group", core_unit)
        for el in self.root.iter(etree.Element):
            tag = el.tag
            info = self._tags.get(tag)
            if info is None:
                info = self._tags[tag] = self._classify(tag)
            kind, spec, key = info
            if kind == "core":
                foreign = self.structure(el, spec, key)
                if tag in holders:
                    self.extension_ids(el)
                    if tag == core_unit:
                        units.append(el)
                elif tag == core_notes:
                    self.check_note_ids(el)
                elif tag == core_skeleton:
                    self.check_skeleton(el)
                if foreign:
                    self.check_module_attrs(el, profiles_declared)
            elif kind == "module":
                if self._inside_extension(el):
                    continue
                foreign = self.structure(el, spec, key)
                self.module_place(el, key)
                check = self._module_checks.get(key)
                if check is not None:
                    check(self, el)
                if foreign:
                    self.check_module_attrs(el, profiles_declared)
            elif kind == "unknown-core":
                if self._core_meta(el):
                    self.warn("<meta> in the XLIFF core namespace inside <mda:metaGroup>; read as <mda:meta>", el)
                    self.structure(el, MODULE_SPECS[(MDA, "meta")], (MDA, "meta"))
                else:
                    self.error(f"<{key}> is not an XLIFF 2 element", el)
            elif kind == "unknown-module" and not self._inside_extension(el):
                self.error(f"<{self.name_of(el)}> is not an element of the {PREFIX_OF[key[0]]} module", el)
        for u in units:
            self.check_unit(u)

    def _classify(self, tag: str) -> tuple:
        ns, local = _split(tag)
        if ns == self.core:
            spec = self.specs.get(local)
            return ("core", spec, local) if spec is not None else ("unknown-core", None, local)
        if ns in MODULE_NAMESPACES:
            spec = MODULE_SPECS.get((ns, local))
            return ("module", spec, (ns, local)) if spec is not None else ("unknown-module", None, (ns, local))
        return ("extension", None, (ns, local))

    def _core_meta(self, el) -> bool:
        """The 2.2 suite's valid Good-mda_top-level.xlf writes <meta> unprefixed (core namespace) inside
        <mda:metaGroup>; a reader must read it, so it counts as <mda:meta> with a warning."""
        parent = el.getparent()
        return el.tag == self.cp + "meta" and parent is not None and _split(parent.tag) == (MDA, "metaGroup")

    def _inside_extension(self, el) -> bool:
        parent = el.getparent()
        while parent is not None:
            ns, _ = _split(parent.tag)
            if ns != self.core and ns not in MODULE_NAMESPACES:
                return True
            if ns == self.core or (ns, _split(parent.tag)[1]) in MODULE_SPECS:
                return False
            parent = parent.getparent()
        return False

    # -- structure (the XSDs)
    def structure(self, el, spec: Spec, key) -> bool:
        """Attributes, children and text against ``spec``; True when the element has namespaced attributes."""
        foreign = False
        attrs = el.attrib
        if attrs:
            allowed = spec.attrs
            for attr, value in attrs.items():
                if attr[0] != "{":
                    check = allowed.get(attr, False)
                    if check is False:
                        self.error(f"attribute {attr!r} is not allowed on <{self.name_of(el)}>", el)
                        continue
                    if check is not None:
                        problem = check(value)
                        if problem:
                            self.error(f"<{self.name_of(el)}> {attr}={value!r} {problem}", el)
                    continue
                foreign = True
                ans, alocal = _split(attr)
                if ans == XML_NS:
                    check = allowed.get("xml:" + alocal, False)
                    if check is False:
                        if key == (MTC, "match") and alocal == "lang":
                            self.error("xml:lang must not be set on <mtc:match> (matches module 5.1.5.3)", el)
                        elif not spec.other_attrs:
                            self.error(f"attribute xml:{alocal} is not allowed on <{self.name_of(el)}>", el)
                        continue
                else:
                    check = self.foreign_attr(el, spec, key, self.name_of(el), ans, alocal)
                    if check is False:
                        continue
                if check is not None:
                    problem = check(value)
                    if problem:
                        self.error(f"<{self.name_of(el)}> {_attr_label(ans, alocal)}={value!r} {problem}", el)
        for req in spec.required:
            if req.startswith("xml:"):
                if el.get(f"{{{XML_NS}}}{req[4:]}") is None:
                    self.error(f"<{self.name_of(el)}> requires the {req} attribute", el)
            elif req not in attrs:
                self.error(f"<{self.name_of(el)}> requires the {req!r} attribute", el)
        # children: empty elements and inline content have fast paths; the rest is matched as tokens
        content = spec.content
        if len(el) == 0:
            ok = content == "" or spec.pattern.fullmatch("") is not None
            tokens: list[str] = []
        elif content == INLINE:
            cp = self.cp
            ok = all(not isinstance(c.tag, str) or (c.tag.startswith(cp) and c.tag[len(cp):] in _INLINE_NAMES)
                     for c in el)
            tokens = [self.token(c) for c in el if isinstance(c.tag, str)] if not ok else []
        else:
            tokens = [self.token(c) for c in el if isinstance(c.tag, str)]
            ok = spec.pattern.fullmatch("".join(t + " " for t in tokens)) is not None
        if not ok:
            self.content_problem(el, spec, self.name_of(el), tokens)
        if not spec.mixed:
            if el.text is not None and el.text.strip() or any(c.tail is not None and c.tail.strip() for c in el):
                text = (el.text or "") + "".join(c.tail or "" for c in el)
                self.error(f"text is not allowed directly inside <{self.name_of(el)}> (element-only content): "
                           f"{text.strip()[:30]!r}", el)
        return foreign

    def token(self, child) -> str:
        ns, local = _split(child.tag)
        if ns == self.core:
            return "mda:meta" if local == "meta" and self._core_meta(child) else local
        if ns in MODULE_NAMESPACES:
            return f"{PREFIX_OF[ns]}:{local}"
        return "#ext"

    def content_problem(self, el, spec: Spec, name: str, tokens: list[str]) -> None:
        # deviations real exporters write (e.g. <skeleton> after a module element, <originalData> after the
        # segments): the rest in order and the element at most once -> warning, kept as written
        for relaxed in spec.order_warning:
            if tokens.count(relaxed) == 1:
                rest = "".join(t + " " for t in tokens if t != relaxed)
                if spec.pattern.fullmatch(_insert_expected(rest, relaxed)):
                    self.warn(f"<{relaxed}> is out of schema order in <{name}>; kept as written", el)
                    return
        found = ", ".join(f"<{t}>" if t != "#ext" else "extension element" for t in tokens) or "nothing"
        self.error(f"<{name}> has invalid content ({found}); the schema expects "
                   f"{_describe(spec.content)}", el)

    def foreign_attr(self, el, spec: Spec, key, name: str, ns: str, local: str):
        """The value check for a module or extension attribute, or False after reporting that it is not
        allowed here."""
        label = f"{PREFIX_OF.get(ns, '{' + ns + '}')}:{local}"
        if ns in MODULE_ATTRS:
            entry = MODULE_ATTRS[ns].get(local)
            if entry is None:
                self.error(f"{label} is not an attribute of the {PREFIX_OF[ns]} module", el)
                return False
            check, places = entry
            if key in places or (key == "ec" and "ec*" in places and el.get("isolated") == "yes"):
                return check
            where = "a non-isolated <ec>" if key == "ec" and "ec*" in places else f"<{name}>"
            self.error(f"{label} is not allowed on {where}", el)
            return False
        if ns in MODULE_NAMESPACES:
            self.error(f"{label} is not an attribute of the {PREFIX_OF[ns]} module", el)
            return False
        if not spec.other_attrs:
            self.error(f"attribute {label} is not allowed on <{name}>", el)
            return False
        if isinstance(key, str) and key not in EXTENSION_ATTRS_ON:
            self.error(f"extension attribute {label} is not allowed on <{name}> (only module attributes are)", el)
            return False
        return None

    def module_place(self, el, key) -> None:
        places = MODULE_PLACES.get(key)
        if places is None:
            return  # a module's inner element: its parent's content model placed it
        parent = el.getparent()
        pkey = self.key_of(parent) if parent is not None else None
        if pkey not in places:
            where = self.name_of(parent) if parent is not None else "the document"
            self.error(f"<{self.name_of(el)}> is not allowed in <{where}>", el)

    # -- ids and their scopes
    def check_note_ids(self, notes) -> None:
        ids: set = set()
        for n in notes:
            nid = n.get("id") if isinstance(n.tag, str) else None
            if nid is not None:
                if nid in ids:
                    self.error(f"note id {nid!r} is not unique in its <notes>", n)
                ids.add(nid)

    def check_skeleton(self, el) -> None:
        has_content = bool((el.text or "").strip()) or any(isinstance(c.tag, str) for c in el)
        if el.get("href") is None and not has_content:
            self.error("<skeleton> must have either an href attribute or content (it has neither)", el)
        elif el.get("href") is not None and has_content:
            self.error("<skeleton> must not have both an href attribute and content", el)

    def extension_ids(self, holder) -> None:
        """Ids (id or xml:id) of extension elements are unique within the immediate enclosing file/group/unit."""
        seen: dict = {}
        for child in holder:
            if not isinstance(child.tag, str):
                continue
            ns, _ = _split(child.tag)
            if ns == self.core or ns in MODULE_NAMESPACES:
                continue
            for el in child.iter():
                if not isinstance(el.tag, str):
                    continue
                for attr in ("id", XML_ID):
                    v = el.get(attr)
                    if v is None:
                        continue
                    if v in seen:
                        self.error(f"extension element id {v!r} is used twice in <{self.name_of(holder)} "
                                   f"id={holder.get('id')!r}>", el)
                    seen[v] = el

    # -- per unit (core processing requirements)
    def index(self, unit) -> _UnitIndex:
        found = self._unit_index.get(unit)
        if found is not None:
            return found
        ix = _UnitIndex()
        for child in unit:
            if self.is_core(child, "originalData"):
                for d in child:
                    if self.is_core(d, "data") and d.get("id") is not None:
                        ix.data.setdefault(d.get("id"), d)
            elif self.is_core(child, "segment") or self.is_core(child, "ignorable"):
                if child.get("id") is not None:
                    ix.segment_level.setdefault(child.get("id"), child)
                for side in child:
                    if self.is_core(side, "source"):
                        bucket = ix.segment_level
                    elif self.is_core(side, "target"):
                        bucket = ix.target_inline
                    else:
                        continue
                    for el in side.iter():
                        if el is not side and isinstance(el.tag, str) and el.get("id") is not None:
                            bucket.setdefault(el.get("id"), el)
        self._unit_index[unit] = ix
        return ix

    def check_unit(self, unit) -> None:
        parts = [c for c in unit if self.is_core(c, "segment") or self.is_core(c, "ignorable")]
        orders: dict = {}
        orders_seen: list = []
        if not any(self.is_core(p, "segment") for p in parts) and parts:
            self.error("the unit has no <segment> (only <ignorable>)", unit)
        non_removable: list = []
        target_ids: set = set()
        sc_by_side: dict = {"source": {}, "target": {}}
        for p in parts:
            src = tgt = None
            for side in p:
                if self.is_core(side, "source"):
                    src = side
                elif self.is_core(side, "target"):
                    tgt = side
            position = len(orders_seen) + 1
            orders_seen.append(p)
            if tgt is not None:
                explicit = tgt.get("order")
                order = int(explicit) if explicit is not None and _DIGITS.fullmatch(explicit.strip()) else position
                if order in orders:
                    how = "explicit" if orders[order].get("order") is not None else "implicit"
                    self.error(f"target order {order} is also the {how} order of another target in the unit "
                               "(target order values must be unique)", tgt)
                orders[order] = tgt
                space_src, space_tgt = (_space(src), _space(tgt)) if src is not None else ("", "")
                if space_src != space_tgt:
                    self.error(f"the target's xml:space ({space_tgt!r}) differs from its source's "
                               f"({space_src!r})", tgt)
            for side_name, side in (("source", src), ("target", tgt)):
                if side is None:
                    continue
                for el in side.iter():
                    if el is side or not isinstance(el.tag, str) or not el.tag.startswith(self.cp):
                        continue
                    local = el.tag[len(self.cp):]
                    if len(el.attrib) > 1 or local == "cp":
                        self.check_inline(el, local, unit)
                    if local == "sc" and el.get("id") is not None:
                        sc_by_side[side_name].setdefault(el.get("id"), el)
                    elif local == "ec" and el.get("startRef") is not None:
                        sc = sc_by_side[side_name].get(el.get("startRef"))
                        if sc is not None:
                            self.check_ec_agrees(sc, el)
                    if local in _CODES:
                        code_id = el.get("id") if local != "ec" or el.get("startRef") is None else \
                            "ec:" + el.get("startRef")
                        if side_name == "target":
                            target_ids.add((local, code_id))
                        elif el.get("canDelete") == "no" and tgt is not None:
                            non_removable.append((local, code_id, el))
        for local, code_id, el in non_removable:
            if (local, code_id) not in target_ids:
                shown = code_id[3:] if code_id and code_id.startswith("ec:") else code_id
                self.error(f"<{local} {'startRef' if local == 'ec' else 'id'}={shown!r} canDelete='no'> is "
                           "missing from the unit's targets (a non-removable code must stay)", el)

    def unit_in_file(self, file_el, uid: str):
        cache = self._unit_of.get(file_el)
        if cache is None:
            cache = self._unit_of[file_el] = {u.get("id"): u for u in file_el.iter(self.cp + "unit")}
        return cache.get(uid)

    def check_sub_flows(self, el, unit) -> None:
        """subFlows* name units of the same file."""
        for attr in ("subFlows", "subFlowsStart", "subFlowsEnd"):
            v = el.get(attr)
            if v is None:
                continue
            file_el = unit
            while file_el is not None and not self.is_core(file_el, "file"):
                file_el = file_el.getparent()
            for ref in v.split():
                if file_el is not None and self.unit_in_file(file_el, ref) is None:
                    self.error(f"{attr}={v!r}: no <unit id={ref!r}> in this <file>", el)

    def check_inline(self, el, local: str, unit) -> None:
        """One inline element's attribute rules (only called when it has more than an id)."""
        if local == "cp":
            h = el.get("hex", "")
            if _HEX.fullmatch(h) and h and not _CP_ALLOWED.fullmatch(h):
                try:
                    ok = int(h, 16) <= 0x10FFFF
                except ValueError:
                    ok = False
                if ok:
                    self.error(f"<cp hex={h!r}> encodes a character XML allows: write it as text "
                               "(<cp> is only for characters XML 1.0 cannot carry)", el)
            return
        sub = el.get("subType")
        if sub is not None and local in _CODES:
            typ = el.get("type")
            if typ is None:
                self.error(f"<{local}> has subType={sub!r} but no type", el)
            elif sub.startswith("xlf:"):
                need = _RESERVED_SUBTYPES.get(sub)
                if need is None:
                    self.error(f"subType={sub!r}: the 'xlf:' prefix is reserved and {sub!r} is not one of its "
                               "values (xlf:lb, xlf:pb, xlf:b, xlf:i, xlf:u, xlf:var)", el)
                elif typ != need:
                    self.error(f"subType={sub!r} requires type={need!r}, not {typ!r}", el)
        cr = el.get("canReorder")
        if cr in ("no", "firstNo") and (el.get("canDelete") != "no" or el.get("canCopy") != "no"):
            self.error(f"<{local} canReorder={cr!r}> requires canDelete='no' and canCopy='no'", el)
        if local == "ec" and el.get("dir") is not None and el.get("isolated") != "yes":
            self.error("dir is only allowed on an isolated <ec>", el)
        copy_of = el.get("copyOf")
        if local in _CODES and (el.get("subFlows") is not None or el.get("subFlowsStart") is not None
                                or el.get("subFlowsEnd") is not None):
            self.check_sub_flows(el, unit)
        if copy_of is not None and local in _CODES:
            ix = self.index(unit)
            if local == "pc" and (el.get("dataRefStart") is not None or el.get("dataRefEnd") is not None) or \
                    local != "pc" and el.get("dataRef") is not None:
                self.error(f"<{local} copyOf={copy_of!r}> must not also refer to original data", el)
            base = ix.segment_level.get(copy_of)
            if base is None:
                base = ix.target_inline.get(copy_of)
            if base is None or not self.is_core(base) or base.tag[len(self.cp):] not in _CODES:
                self.error(f"copyOf={copy_of!r} refers to no code of the unit", el)
            elif base.get("canCopy") == "no":
                self.error(f"copyOf={copy_of!r} refers to a code with canCopy='no'", el)
        if local in ("mrk", "sm"):
            self.check_annotation(el, local, unit)

    def check_ec_agrees(self, sc, ec) -> None:
        for attr in ("canCopy", "canDelete", "canOverlap", "canReorder"):
            v = ec.get(attr)
            if v is None:
                continue
            expected = sc.get(attr, "yes")
            if attr == "canReorder" and expected == "firstNo":
                expected = "no"
            if v != expected:
                self.error(f"<ec startRef={ec.get('startRef')!r}> has {attr}={v!r} but its <sc> implies "
                           f"{expected!r}", ec)

    def check_annotation(self, el, local: str, unit) -> None:
        typ = el.get("type")
        ref = el.get("ref")
        if typ == "comment":
            if (el.get("value") is None) == (ref is None):
                self.error(f"<{local} type='comment'> must have exactly one of value and ref", el)
            elif ref is not None:
                target = self.resolve(ref, el, unit)
                if isinstance(target, str):
                    self.ref_issue(f"<{local} type='comment'> ref={ref!r}: {target}", el)
                elif not (self.is_core(target, "note") and unit in target.iterancestors()):
                    self.error(f"<{local} type='comment'> ref={ref!r} must point to a <note> of this unit", el)
            return
        if ref is not None and ref.startswith("#"):
            target = self.resolve(ref, el, unit)
            if isinstance(target, str):
                self.ref_issue(f"<{local}> ref={ref!r}: {target}", el)

    def ref_issue(self, message: str, el) -> None:
        if STALE_TARGET in message:
            self.warn(message.replace(STALE_TARGET, "") + "; the target was rewritten, the reference is stale", el)
        else:
            self.error(message, el)

    # -- fragment identifiers (2.2 section 4.8 / appendix "Fragment identification")
    def resolve(self, ref: str, el, unit=None):
        """The element a ``#…`` fragment identifier points to, or a message saying why it points nowhere."""
        if not ref.startswith("#"):
            return "is not a fragment identifier ('#…')"
        body = ref[1:]
        absolute = body.startswith("/")
        if absolute:
            body = body[1:]
        if not body:
            return "is empty"
        parts = body.split("/")
        steps = []
        for p in parts:
            if "=" in p:
                prefix, _, value = p.partition("=")
                if not NMTOKEN.fullmatch(prefix) or ":" in prefix:
                    return f"prefix {prefix!r} is not an NMTOKEN"
                if len(prefix) == 1 and prefix not in _CORE_FRAGID:
                    return f"prefix {prefix!r}: one-letter prefixes are reserved for XLIFF core (f, g, u, n, d, t)"
            else:
                prefix, value = None, p
            if not value or not NMTOKEN.fullmatch(value):
                return f"{p!r} is not 'prefix=id' with an NMTOKEN id"
            steps.append((prefix, value))
        if any(p is None for p, _ in steps) and len(steps) > 1:
            return "an id without prefix must be the only part"
        seen = set()
        leaf_at = None
        rank = {"f": 0, "g": 1, "u": 2}
        last_rank = -1
        for i, (prefix, _) in enumerate(steps):
            if prefix in ("f", "u"):
                if prefix in seen:
                    return f"prefix {prefix!r} is used twice"
            if prefix in rank:
                if leaf_at is not None or rank[prefix] < last_rank:
                    return "parts are out of order (f, then g…, then u, then one leaf)"
                last_rank = rank[prefix]
            else:
                if leaf_at is not None:
                    return "has more than one leaf part"
                leaf_at = i
            seen.add(prefix)
        if absolute and steps[0][0] != "f":
            return "an absolute fragment identifier must start with f="
        # resolution
        scope = None
        if el is not None:
            scope = unit
            if scope is None:
                for a in el.iterancestors():
                    if self.is_core(a, "unit") or self.is_core(a, "group") or self.is_core(a, "file"):
                        scope = a
                        break
        for prefix, value in steps:
            if prefix == "f":
                scope = next((f for f in self.root if self.is_core(f, "file") and f.get("id") == value), None)
                if scope is None:
                    return f"no <file id={value!r}>"
            elif prefix in ("g", "u"):
                file_el = scope
                while file_el is not None and not self.is_core(file_el, "file"):
                    file_el = file_el.getparent()
                base = scope if scope is not None and self.is_core(scope, "group") and prefix == "u" else file_el
                name = "group" if prefix == "g" else "unit"
                found = None
                if base is not None:
                    found = next((x for x in base.iter(self.cp + name) if x.get("id") == value), None)
                if found is None:
                    return f"no <{name} id={value!r}> there"
                scope = found
            elif prefix == "n":
                holder = scope
                found = None
                if holder is not None:
                    for c in holder:
                        if self.is_core(c, "notes"):
                            found = next((n for n in c if self.is_core(n, "note") and n.get("id") == value), None)
                if found is None:
                    return f"no <note id={value!r}> there"
                return found
            elif prefix in ("d", "t", None):
                if scope is None or not self.is_core(scope, "unit"):
                    return f"{prefix + '=' if prefix else 'an id without prefix '}needs a unit"
                ix = self.index(scope)
                table = ix.data if prefix == "d" else ix.target_inline if prefix == "t" else ix.segment_level
                found = table.get(value)
                if found is None:
                    what = {"d": "<data>", "t": "target element", None: "segment, ignorable or source element"}
                    return (STALE_TARGET if prefix == "t" else "") + f"no {what[prefix]} with id {value!r} in the unit"
                return found
            else:  # module or extension prefix: an element with that id (id or xml:id) in scope
                want_ns = _MODULE_FRAGID.get(prefix) or EXTENSION_FRAGID_PREFIXES.get(prefix)
                if want_ns is None:
                    known = ", ".join(sorted(_MODULE_FRAGID) + sorted(EXTENSION_FRAGID_PREFIXES))
                    return f"unknown prefix {prefix!r} (XLIFF core uses f, g, u, n, d, t; known: {known})"
                found = None
                if scope is not None:
                    for x in self._scoped(scope):
                        if (x.get("id") == value or x.get(XML_ID) == value) and _split(x.tag)[0] == want_ns:
                            found = x
                            break
                if found is None:
                    return f"prefix {prefix!r}: no element with id {value!r} there"
                return found
        return scope

    def _scoped(self, scope):
        """Elements whose scope is ``scope``: its descendants, not entering nested files/groups/units."""
        stack = [c for c in scope if isinstance(c.tag, str)]
        while stack:
            el = stack.pop()
            if self.is_core(el, "unit") or self.is_core(el, "group") or self.is_core(el, "file"):
                continue
            yield el
            stack.extend(c for c in el if isinstance(c.tag, str))

    # -- modules
    def check_module_attrs(self, el, profiles_declared: bool) -> None:
        if el.get(f"{{{FS}}}subFs") is not None and el.get(f"{{{FS}}}fs") is None:
            self.error("fs:subFs is used without fs:fs", el)
        info = el.get(f"{{{SLR}}}sizeInfo")
        info_ref = el.get(f"{{{SLR}}}sizeInfoRef")
        if info is not None and info_ref is not None:
            self.error("slr:sizeInfo and slr:sizeInfoRef must not be used together", el)
        if info is not None and not _DIGITS.fullmatch(info.strip()) and (profiles_declared or _NUMBER.fullmatch(info.strip())):
            # sizeInfo is profile data: with an explicit <slr:profiles> it is a size in that profile's whole units
            # (code points, bytes); without one, text is opaque (the 2.2 core suite's valid
            # withModulesAttributesInEc.xlf has "some info"), but a number is still a size and must be whole
            self.error(f"slr:sizeInfo={info!r} must be a non-negative integer (a size in whole code points or "
                       "bytes)", el)
        if info_ref is not None and not self.size_data_reachable(el, info_ref):
            self.error(f"slr:sizeInfoRef={info_ref!r} points to no element of an <slr:data> beside this element "
                       "or one of its ancestors", el)

    def size_data_reachable(self, el, ref: str) -> bool:
        node = el
        while node is not None:
            parent = node.getparent()
            if parent is None:
                break
            for sib in parent:
                if isinstance(sib.tag, str) and _split(sib.tag) == (SLR, "data"):
                    if any(isinstance(x.tag, str) and (x.get("id") == ref or x.get(XML_ID) == ref)
                           for x in sib.iter()):
                        return True
            node = parent
        return False

    def check_matches(self, matches) -> None:
        unit = matches.getparent()
        seen: set = set()
        for m in matches:
            if not isinstance(m.tag, str):
                continue
            mid = m.get("id")
            if mid is not None:
                if mid in seen:
                    self.error(f"mtc:match id {mid!r} is not unique in <mtc:matches>", m)
                seen.add(mid)
            if m.get("subType") is not None and m.get("type") is None:
                self.error("<mtc:match> has subType but no type (matches module 5.1.6.8)", m)
            ref = m.get("ref")
            if ref is not None:
                target = self.resolve(ref, m, unit if unit is not None and self.is_core(unit, "unit") else None)
                if isinstance(target, str):
                    self.ref_issue(f"<mtc:match> ref={ref!r}: {target} (it must point to a span of this unit)", m)

    def check_glossary(self, glossary) -> None:
        unit = glossary.getparent()
        seen: set = set()
        for entry in glossary:
            if not isinstance(entry.tag, str) or _split(entry.tag) != (GLS, "glossEntry"):
                continue
            kids = [_split(c.tag)[1] for c in entry if isinstance(c.tag, str) and _split(c.tag)[0] == GLS]
            if "translation" not in kids and "definition" not in kids:
                self.error("<gls:glossEntry> needs a <gls:translation> or a <gls:definition>", entry)
            for el in [entry] + [c for c in entry if isinstance(c.tag, str) and _split(c.tag) == (GLS, "translation")]:
                gid = el.get("id")
                if gid is not None:
                    if gid in seen:
                        self.error(f"glossary id {gid!r} is not unique among the <gls:glossEntry> and "
                                   "<gls:translation> elements of this <gls:glossary>", el)
                    seen.add(gid)
                ref = el.get("ref")
                if ref is not None and ref.startswith("#"):
                    target = self.resolve(ref, el, unit if unit is not None and self.is_core(unit, "unit") else None)
                    if isinstance(target, str):
                        self.ref_issue(f"<{self.name_of(el)}> ref={ref!r}: {target}", el)

    def check_metadata(self, metadata) -> None:
        seen: set = set()
        for g in metadata.iter(f"{{{MDA}}}metaGroup"):
            gid = g.get("id")
            if gid is not None:
                if gid in seen:
                    self.error(f"mda:metaGroup id {gid!r} is not unique in its <mda:metadata>", g)
                seen.add(gid)

    def check_validation_rule(self, rule) -> None:
        kinds = [a for a in ("isPresent", "isNotPresent", "startsWith", "endsWith") if rule.get(a) is not None]
        custom = [a for a in rule.attrib if _split(a)[0] not in ("", XML_NS)]
        if len(kinds) + (1 if custom and not kinds else 0) != 1 or (kinds and custom):
            found = ", ".join(kinds + [_attr_label(*_split(a)) for a in custom]) or "none"
            self.error("<val:rule> needs exactly one of isPresent, isNotPresent, startsWith, endsWith or a custom "
                       f"rule attribute (validation module 5.8.4.3); found: {found}", rule)
        if rule.get("existsInSource") is not None and len([k for k in kinds if k != "isNotPresent"]) != 1:
            self.error("<val:rule existsInSource> needs exactly one of isPresent, startsWith, endsWith "
                       "(validation module 5.8.5.6)", rule)
        if rule.get("occurs") is not None and rule.get("isPresent") is None:
            self.error("<val:rule occurs> is only allowed with isPresent", rule)

    def check_resource_data(self, rd) -> None:
        holder = rd.getparent()
        seen: set = set()
        items: set = set()
        for other in (holder if holder is not None else []):
            if isinstance(other.tag, str) and _split(other.tag) == (RES, "resourceData"):
                for x in other:
                    if isinstance(x.tag, str) and _split(x.tag) == (RES, "resourceItem") and x.get("id"):
                        items.add(x.get("id"))
        for x in rd:
            if not isinstance(x.tag, str):
                continue
            _, local = _split(x.tag)
            xid = x.get("id")
            if xid is not None:
                if xid in seen:
                    self.error(f"res id {xid!r} is not unique among the <res:resourceItem> and "
                               "<res:resourceItemRef> elements here (resource data module 5.5.4.3)", x)
                seen.add(xid)
            if local != "resourceItem":
                continue
            for part in x:
                if not isinstance(part.tag, str) or _split(part.tag)[0] != RES:
                    continue
                plocal = _split(part.tag)[1]
                if plocal not in ("source", "target"):
                    continue
                empty = not (part.text or "").strip() and not any(isinstance(c.tag, str) for c in part)
                if empty and part.get("href") is None:
                    self.error(f"an empty <res:{plocal}> requires href", part)
                elif not empty and part.get("href") is not None:
                    self.error(f"<res:{plocal}> with content must not have href (href only when it is empty)", part)
                lang = part.get(XML_LANG)
                if plocal == "source" and lang is not None and self.src_lang \
                        and lang.lower() != self.src_lang.lower():
                    self.error(f"<res:source> xml:lang={lang!r} differs from the document's srcLang "
                               f"{self.src_lang!r} (resource data module 5.5.4.5)", part)

    def check_revisions(self, revisions) -> None:
        track = revisions.getparent()
        holder = track.getparent() if track is not None else None
        applies = revisions.get("appliesTo")
        ref = revisions.get("ref")
        if holder is None or applies is None:
            return
        candidates = [x for x in holder.iter() if isinstance(x.tag, str) and _split(x.tag)[1] == applies
                      and x is not holder]
        target = None
        if ref is not None:
            target = next((x for x in holder.iter() if isinstance(x.tag, str) and x.get("id") == ref
                           and x is not holder), None)
            if target is None:
                self.error(f"<ctr:revisions appliesTo={applies!r} ref={ref!r}>: no element with id {ref!r} in the "
                           f"enclosing <{self.name_of(holder)}> (change tracking module 5.6.5.5)", revisions)
        elif len(candidates) > 1 and any(x.get("id") is not None for x in candidates):
            self.error(f"<ctr:revisions appliesTo={applies!r}> needs ref: there are several <{applies}> elements "
                       "and they have ids (change tracking module 5.6.4.3)", revisions)
        for revision in revisions:
            if not isinstance(revision.tag, str) or _split(revision.tag) != (CTR, "revision"):
                continue
            props: set = set()
            for item in revision:
                if not isinstance(item.tag, str) or _split(item.tag) != (CTR, "item"):
                    continue
                prop = item.get("property")
                if prop is None:
                    continue
                if prop != "content" and not _QNAME.fullmatch(prop):
                    self.error(f"<ctr:item property={prop!r}> is neither 'content' nor an attribute name "
                               f"(change tracking module 5.6.5.6)", item)
                    continue
                if prop in props:
                    self.error(f"<ctr:item property={prop!r}> appears twice in one <ctr:revision>", item)
                props.add(prop)
                if prop != "content" and target is not None and target.get(prop) is None:
                    self.error(f"<ctr:item property={prop!r}> must be 'content' or an attribute of the referenced "
                               f"<{applies} id={ref!r}> (change tracking module 5.6.5.6)", item)


Checker._module_checks = {
    (MTC, "matches"): Checker.check_matches, (GLS, "glossary"): Checker.check_glossary,
    (MDA, "metadata"): Checker.check_metadata, (VAL, "rule"): Checker.check_validation_rule,
    (RES, "resourceData"): Checker.check_resource_data, (CTR, "revisions"): Checker.check_revisions,
}
_INLINE_NAMES = frozenset({"cp", "ph", "pc", "sc", "ec", "mrk", "sm", "em"})


def _split(tag: str) -> tuple[str, str]:
    if tag[0] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _attr_label(ns: str, local: str) -> str:
    if not ns:
        return local
    if ns == XML_NS:
        return "xml:" + local
    return f"{PREFIX_OF.get(ns, '{' + ns + '}')}:{local}"


def _space(el) -> str:
    while el is not None:
        v = el.get(XML_SPACE)
        if v is not None:
            return v
        el = el.getparent()
    return "default"


def _describe(content: str) -> str:
    text = content.replace(OTHER, "(extension elements)").replace(INLINE, "(inline elements)*")
    text = re.sub(r"\(\?:", "(", text).replace(" )", ")").replace(" ", " ").strip()
    return text or "no child elements"


def _insert_expected(rest: str, relaxed: str) -> str:
    """``rest`` with ``relaxed`` put where the schema wants it (first for skeleton, before the segments for
    originalData)."""
    if relaxed == "skeleton":
        return "skeleton " + rest
    m = re.search(r"(?:segment|ignorable) ", rest)
    return rest[:m.start()] + relaxed + " " + rest[m.start():] if m else rest + relaxed + " "
