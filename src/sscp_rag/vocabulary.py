"""The review vocabulary shared by retrieval and answers: how reviews name people and years, and
the field's abbreviations with their spelled-out forms.

Rules that more than one module applies live here, so that each is written once.
"""

from __future__ import annotations

import re

# How reviews name the people they are about: "Child Q", "Baby LL", "Family M", "Adult B",
# "Young Person C". Only with a capital, so "a child I worked with" is not read as a pseudonym.
PSEUDONYM = re.compile(r"\b(?:Child|Baby|Family|Adult|Young\s+Person)\s+[A-Z]{1,3}\b")

# A plausible year of a review or of the events it describes.
YEAR = re.compile(r"\b(19[89]\d|20[0-4]\d)\b")

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
