"""The review vocabulary: how reviews name people, years and review types, the field's
abbreviations with their spelled-out forms, and the theme lexicon.

Rules that more than one module applies (ingest, fetch, retrieval, answers) live here, so that
each is written once. This is a base module: it imports nothing of the package but records.

Themes: one id per theme, its aliases, and chunk tagging. Method: a lexicon of aliases (regular
expressions, case-insensitive) drawn from national analyses of serious case reviews, so that
"toxic trio" tags cumulative harm and "co-sleeping" tags safer sleep. A theme is tagged when its
aliases occur in the chunk. Where an embedding of the chunk is given, a theme whose description is
very similar (cosine >= ``EMBED_THRESHOLD``) is tagged too, which catches paraphrase the lexicon
misses without the noise of a low threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# The controlled list of review types is defined with the records that carry it and read from
# here with the rest of the vocabulary.
from sscp_rag.records import REVIEW_TYPE_LABELS as REVIEW_TYPE_LABELS
from sscp_rag.records import REVIEW_TYPES as REVIEW_TYPES
from sscp_rag.records import content_id

# How reviews name the people they are about: "Child Q", "Baby LL", "Family M", "Young Person C",
# and "Adult B" in the domestic homicide and adult reviews a partnership publishes beside them.
# Fetch and ingest once knew no "Adult" and answers no "Young Person"; the union is right for
# both: a review about Adult B has Adult B as its subject, and a question naming Young Person C
# names a report. Only with a capital, so "a child I worked with" is not read as a pseudonym.
PSEUDONYM = re.compile(r"\b(?:Child|Baby|Family|Adult|Young\s+Person)\s+[A-Z]{1,3}\b")

# A plausible year of a review or of the events it describes.
YEAR = re.compile(r"\b(19[89]\d|20[0-4]\d)\b")


def pseudonym(text: str) -> str:
    """The first pseudonym in ``text`` ("Child Q"), its spacing normalised; '' if there is none."""
    m = PSEUDONYM.search(text)
    return " ".join(m.group(0).split()) if m else ""


def first_year(text: str) -> int | None:
    """The first plausible year in ``text``, or None."""
    m = YEAR.search(text)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------
# review types

# What manifests and users may call a review type, mapped to the controlled list.
TYPE_ALIASES: dict[str, str] = {t.lower(): t for t in REVIEW_TYPES} | {
    "cspr": "LCSPR",
    "lcspr": "LCSPR",
    "practice review": "LCSPR",
    "serious case review": "SCR",
    "thematic review": "thematic",
    "7mb": "7-minute briefing",
    "7 minute briefing": "7-minute briefing",
    "seven minute briefing": "7-minute briefing",
    "briefing": "7-minute briefing",
    "domestic homicide review": "DHR",
    "good practice": "good-practice",
}


def normalise_type(value: str) -> str:
    """Map a review type name or alias to the controlled list; raise ValueError on anything else."""
    key = value.strip().lower()
    if key in TYPE_ALIASES:
        return TYPE_ALIASES[key]
    raise ValueError(f"unknown review type {value!r} (use one of: {', '.join(REVIEW_TYPES)})")


# The review type a title, file name or first page names (lower-cased). Order matters: the first
# pattern that matches wins ("SUDI Infographic" is an infographic, "Child Death Review Partnership
# SUDI thematic review" is SUDI, "Thematic Review of Surrey SCRs" is thematic).
TYPE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\b(?:7|seven)[\s_-]*minute|\b7mb\b", "7-minute briefing"),
    (r"infographic", "infographic"),
    (r"\bdhr\b|domestic homicide", "DHR"),
    (r"\bsudi\b|sudden unexpected death|child death review", "SUDI"),
    (r"good practice", "good-practice"),
    (r"thematic", "thematic"),
    (r"\blcspr\b|\bcspr\b|practice review", "LCSPR"),
    (r"\bscr\b|serious case review", "SCR"),
)

# A page that merely mentions "good practice" is not a good-practice report: only a file name or
# title says so.
PAGE_TYPE_PATTERNS: tuple[tuple[str, str], ...] = tuple(p for p in TYPE_PATTERNS if p[1] != "good-practice")


def infer_type(text: str, patterns: tuple[tuple[str, str], ...] = TYPE_PATTERNS) -> str:
    """The review type the first matching pattern names, or "other"."""
    low = text.lower()
    for pat, rtype in patterns:
        if re.search(pat, low):
            return rtype
    return "other"


# --------------------------------------------------------------------------------------------
# abbreviations

# Abbreviations practitioners type, and what the reports may spell out instead (either way
# round). Lower case; the spelled-out form is matched word by word after stemming.
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "ae": ("accident and emergency", "emergency department"),
    "asd": ("autism", "autistic spectrum"),
    "camhs": ("child and adolescent mental health",),
    "cce": ("child criminal exploitation", "criminal exploitation"),
    "cin": ("child in need", "children in need"),
    "cla": ("children looked after", "looked after children"),
    "cp": ("child protection",),
    "cpp": ("child protection plan",),
    "cse": ("child sexual exploitation", "sexual exploitation"),
    "csa": ("child sexual abuse", "sexual abuse"),
    "cspr": ("child safeguarding practice review",),
    "dash": ("domestic abuse stalking",),
    "dhr": ("domestic homicide review",),
    "dsl": ("designated safeguarding lead",),
    "ed": ("emergency department",),
    "ehc": ("education health and care",),
    "ehcp": ("education health and care plan",),
    "fgm": ("female genital mutilation", "genital mutilation"),
    "fii": ("fabricated or induced illness", "induced illness"),
    "gp": ("general practitioner", "general practice"),
    "hv": ("health visitor", "health visiting"),
    "icpc": ("initial child protection conference",),
    "iro": ("independent reviewing officer",),
    "lado": ("local authority designated officer", "designated officer"),
    "lcspr": ("local child safeguarding practice review",),
    "mappa": ("multi agency public protection",),
    "marac": ("multi agency risk assessment conference",),
    "mash": ("multi agency safeguarding hub",),
    "nai": ("non accidental injury",),
    "nfa": ("no further action",),
    "plo": ("public law outline",),
    "rcpc": ("review child protection conference",),
    "scr": ("serious case review",),
    "send": ("special educational needs",),
    "sen": ("special educational needs",),
    "sudi": ("sudden unexpected death in infancy", "sudden unexpected death"),
    "sw": ("social worker",),
    "uasc": ("unaccompanied asylum seeking",),
    "yot": ("youth offending",),
}


# --------------------------------------------------------------------------------------------
# themes


@dataclass(frozen=True)
class Theme:
    id: str
    label: str
    description: str
    aliases: tuple[str, ...]  # regular expressions


THEMES: tuple[Theme, ...] = (
    Theme(
        "neglect",
        "Neglect",
        "Neglect of a child's basic needs: food, hygiene, supervision, health care, chronic neglect.",
        (
            r"neglect\w*",
            r"chronic neglect",
            r"graded care profile",
            r"GCP ?2",
            r"poor home conditions",
            r"unkempt",
            r"malnutrition",
            r"hungry|hunger",
        ),
    ),
    Theme(
        "toxic-trio",
        "Toxic trio / cumulative harm",
        "Domestic abuse, parental mental ill health and substance misuse together; cumulative harm.",
        (r"toxic trio", r"cumulative harm", r"cumulative impact", r"trio of"),
    ),
    Theme(
        "domestic-abuse",
        "Domestic abuse and coercive control",
        "Domestic abuse, domestic violence, coercive and controlling behaviour between adults in a child's life.",
        (
            r"domestic (abuse|violence)",
            r"coercive(ly)?( and)? control\w*",
            r"controlling behaviou?r",
            r"\bMARAC\b",
            r"\bDASH\b",
            r"operation encompass",
            r"intimate partner",
            r"domestic homicide",
        ),
    ),
    Theme(
        "parental-mental-health",
        "Parental mental health",
        "A parent's or carer's mental ill health: depression, psychosis, postnatal illness.",
        (
            r"(parental|maternal|paternal|mother'?s|father'?s) (mental|depress)\w*",
            r"post-?natal (depression|mental)",
            r"perinatal mental",
            r"adult mental health",
            r"bipolar",
            r"psychosis|psychotic",
            r"mental (ill )?health (of|needs of) (the )?(mother|father|parent)",
        ),
    ),
    Theme(
        "substance-misuse",
        "Parental substance misuse",
        "Alcohol or drug misuse by parents or carers.",
        (
            r"substance (mis)?use",
            r"alcohol\w*",
            r"drug (use|misuse)",
            r"drinking",
            r"cannabis",
            r"heroin|cocaine|methadone",
            r"intoxicated|drunk",
        ),
    ),
    Theme(
        "information-sharing",
        "Information sharing and multi-agency working",
        "Sharing information between agencies, multi-agency working, escalation of concerns.",
        (
            r"information(-| )sharing",
            r"share[sd]? information",
            r"multi-?agency",
            r"escalat\w+",
            r"\bMASH\b",
            r"strategy (discussion|meeting)",
        ),
    ),
    Theme(
        "professional-curiosity",
        "Professional curiosity",
        "Professional curiosity and respectful uncertainty: questioning what families say.",
        (r"professional curiosity", r"respectful uncertainty", r"curious", r"think the unthinkable"),
    ),
    Theme(
        "disguised-compliance",
        "Disguised compliance",
        "Parents appearing to cooperate while avoiding change: disguised compliance.",
        (r"disguised compliance", r"apparent (co-?operation|compliance)", r"superficial(ly)? (co-?operat|engag)\w*"),
    ),
    Theme(
        "voice-of-child",
        "Voice of the child and lived experience",
        "Hearing the child's voice, wishes and feelings, and their lived experience.",
        (
            r"voice of the child",
            r"child'?s voice",
            r"lived experience",
            r"wishes and feelings",
            r"seen (alone|on their own)",
            r"day in the life",
        ),
    ),
    Theme(
        "critical-thinking",
        "Critical thinking, challenge and supervision",
        "Critical thinking and challenge in practice, reflective supervision, confirmation bias.",
        (
            r"supervision",
            r"critical thinking",
            r"challenge",
            r"confirmation bias",
            r"optimism bias",
            r"rule of optimism",
            r"reflective",
        ),
    ),
    Theme(
        "safer-sleep",
        "SUDI, safer sleep and co-sleeping",
        "Sudden unexpected death in infancy, safer sleep advice, co-sleeping and unsafe sleep environments.",
        (
            r"\bSUDI\b",
            r"sudden unexpected death",
            r"safer sleep",
            r"co-?sleep\w*",
            r"bed-?shar\w*",
            r"sofa",
            r"cot death",
            r"sleep environment",
        ),
    ),
    Theme(
        "nai-infants",
        "Non-accidental injury in babies",
        "Non-accidental injury to babies; bruising in non-mobile infants; abusive head trauma.",
        (
            r"non-?accidental injur\w*",
            r"\bNAI\b",
            r"\bnon-?mobile",
            r"bruis\w+ (in|on) (a |the )?([\w-]+ )?(baby|babies|infants?)",
            r"abusive head trauma",
            r"shaken baby",
            r"fractures?",
            r"bruising protocol",
        ),
    ),
    Theme(
        "suicide-self-harm",
        "Adolescent suicide and self-harm",
        "Suicide, suicidal ideation and self-harm by young people.",
        (r"suicid\w*", r"self-?harm\w*", r"overdose", r"ligature", r"took (his|her|their) own life"),
    ),
    Theme(
        "exploitation",
        "Exploitation and extra-familial harm",
        "Child criminal and sexual exploitation, county lines, extra-familial harm, missing from home or care.",
        (
            r"exploit\w+",
            r"county lines",
            r"\bC[CS]E\b",
            r"extra-?familial",
            r"contextual safeguarding",
            r"missing (from )?(home|care|episodes?)",
            r"went missing",
            r"national referral mechanism",
            r"\bNRM\b",
            r"grooming",
        ),
    ),
    Theme(
        "csa-family",
        "Child sexual abuse in the family",
        "Sexual abuse of a child by a family member or within the family environment.",
        (r"(intra-?familial )?(child )?sexual abuse", r"sexually abus\w+", r"\bCSA\b", r"disclos(ure|ed) of sexual"),
    ),
    Theme(
        "disability-send",
        "Disability and SEND",
        "Disabled children, special educational needs and disabilities, communication needs, EHCPs.",
        (
            r"disab\w+",
            r"\bSEND\b",
            r"special educational needs",
            r"\bEHCP?\b",
            r"autis\w+",
            r"learning (disability|difficult\w+)",
            r"communication needs",
        ),
    ),
    Theme(
        "not-in-school",
        "Children not in school",
        "Children missing education, exclusion, reduced timetables and elective home education.",
        (
            r"elective home education",
            r"home educat\w+",
            r"\bEHE\b",
            r"missing education",
            r"exclu(ded|sion)",
            r"reduced timetable",
            r"school attendance",
            r"not in school",
            r"persistent(ly)? absen\w+",
        ),
    ),
    Theme(
        "race-culture-identity",
        "Race, culture and identity",
        "Ethnicity, culture, faith, language and identity, and professionals' assumptions about them.",
        (
            r"\brac(e|ism|ial)\b",
            r"cultur\w+",
            r"ethnic\w*",
            r"identity",
            r"interpreter",
            r"adultification",
            r"faith",
            r"immigration",
        ),
    ),
    Theme(
        "young-carers",
        "Young carers",
        "Children who care for a parent or sibling.",
        (r"young carers?", r"caring (role|responsibilit\w+)", r"carer'?s assessment"),
    ),
    Theme(
        "poverty-housing",
        "Poverty and housing",
        "Poverty, debt, overcrowding, temporary accommodation and housing instability.",
        (
            r"povert\w+",
            r"temporary accommodation",
            r"overcrowd\w+",
            r"housing",
            r"homeless\w*",
            r"\bdebt\b",
            r"food bank",
            r"rent arrears",
        ),
    ),
)

THEME_IDS: tuple[str, ...] = tuple(t.id for t in THEMES)
THEMES_BY_ID: dict[str, Theme] = {t.id: t for t in THEMES}
EMBED_THRESHOLD = 0.55
# A theme needs this many alias matches in one chunk (or one strong phrase) to be tagged; a single
# passing word such as "culture" or "challenge" in a long chunk is not a theme.
MIN_ALIAS_HITS = 2

_COMPILED: dict[str, list[re.Pattern[str]]] = {
    t.id: [re.compile(r"\b(?:" + a + r")", re.IGNORECASE) for a in t.aliases] for t in THEMES
}
# Phrases specific enough to tag a theme on one occurrence.
_STRONG: dict[str, re.Pattern[str]] = {
    t.id: re.compile(r"\b(?:" + "|".join(a for a in t.aliases if " " in a or "\\b" in a) + r")", re.IGNORECASE)
    for t in THEMES
    if any(" " in a or "\\b" in a for a in t.aliases)
}


def lexicon_version() -> str:
    """A short hash of the themes and their tagging rules. Chunks are tagged at ingest, so the
    index fingerprint holds this: a changed lexicon rebuilds the index instead of mixing tags."""
    return content_id("themes", repr(THEMES), EMBED_THRESHOLD, MIN_ALIAS_HITS, length=12)


def resolve_theme(name: str) -> str | None:
    """Map a theme id, label or alias phrase ('co-sleeping', 'toxic trio') to its theme id."""
    key = name.strip().lower()
    if not key:
        return None
    for t in THEMES:
        if key in (t.id, t.label.lower()) or key.replace(" ", "-") == t.id:
            return t.id
    for t in THEMES:
        if any(p.fullmatch(key) for p in _COMPILED[t.id]):
            return t.id
    for t in THEMES:
        if any(p.search(key) for p in _COMPILED[t.id]):
            return t.id
    return None


def tag_text(
    text: str, embedding: np.ndarray | None = None, theme_vectors: np.ndarray | None = None
) -> tuple[str, ...]:
    """The theme ids a passage is about (lexicon, plus optional embedding similarity)."""
    found: list[str] = []
    for t in THEMES:
        hits = sum(len(p.findall(text)) for p in _COMPILED[t.id])
        strong = _STRONG.get(t.id)
        if hits >= MIN_ALIAS_HITS or (strong is not None and strong.search(text)):
            found.append(t.id)
    if embedding is not None and theme_vectors is not None:
        sims = theme_vectors @ embedding
        for t, s in zip(THEMES, sims):
            if s >= EMBED_THRESHOLD and t.id not in found:
                found.append(t.id)
    return tuple(tid for tid in THEME_IDS if tid in found)


def theme_descriptions() -> list[str]:
    """Texts embedded to compare passages with themes."""
    return [f"{t.label}. {t.description}" for t in THEMES]


def alias_hits(text: str) -> dict[str, int]:
    """How many times each theme's aliases occur in ``text`` (themes with none left out): the
    strength of a passage for a theme, used to pick a theme's strongest passage in a report."""
    out = {}
    for t in THEMES:
        n = sum(len(p.findall(text)) for p in _COMPILED[t.id])
        if n:
            out[t.id] = n
    return out


def themes_in(text: str) -> tuple[str, ...]:
    """The themes a short text (a recommendation, a sentence) names: any one alias is enough, as a
    short text that says "co-sleeping" or "escalation" once is about it (passages need more)."""
    hits = alias_hits(text)
    return tuple(tid for tid in THEME_IDS if tid in hits)
