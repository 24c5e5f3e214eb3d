#!/usr/bin/env python3
"""Render the fictional demo corpus: corpus/demo/src/*.md -> corpus/demo/*.pdf + manifest.json.

Usage:
    python scripts/build_demo_corpus.py [--src DIR] [--out DIR]

Each source file is Markdown with a small front matter block (see corpus/README.md).
Output is reproducible: rendering the same sources twice gives byte-identical PDFs
(reportlab ``invariant=1``: fixed creation date and document id, no timestamps).

A malformed source file (missing front matter key, unknown type, bad date, ...) is
reported on stderr and skipped; the other documents are still rendered, the manifest
lists the documents that rendered, and the script exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    FrameBreak,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.tableofcontents import TableOfContents

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = REPO_ROOT / "corpus" / "demo" / "src"
DEFAULT_OUT = REPO_ROOT / "corpus" / "demo"

PUBLISHER = "Surrey Safeguarding Children Partnership"
HEADER_RIGHT = "Fictional demonstration document"
FICTIONAL_NOTICE = (
    "FICTIONAL DOCUMENT. Written for the sscp-rag software demonstration. "
    "The people, events and agencies' actions described are invented; all names "
    "are pseudonyms. It is not a publication of any safeguarding partnership."
)

# document type id -> words on the title page
TYPE_WORDS = {
    "SCR": "Serious Case Review",
    "LCSPR": "Local Child Safeguarding Practice Review",
    "thematic": "Thematic Review",
    "SUDI": "Sudden Unexpected Death in Infancy (SUDI) Review",
    "DHR": "Domestic Homicide Review",
    "7-minute briefing": "7 Minute Briefing",
    "good-practice": "Good Practice Briefing",
    "infographic": "Infographic",
    "other": "Partnership Publication",
}

# theme ids allowed in front matter (mirrors the project's theme list)
THEME_IDS = {
    "neglect",
    "toxic-trio",
    "domestic-abuse",
    "parental-mental-health",
    "substance-misuse",
    "information-sharing",
    "professional-curiosity",
    "disguised-compliance",
    "voice-of-child",
    "critical-thinking",
    "safer-sleep",
    "nai-infants",
    "suicide-self-harm",
    "exploitation",
    "csa-family",
    "disability-send",
    "not-in-school",
    "race-culture-identity",
    "young-carers",
    "poverty-housing",
}

REQUIRED_KEYS = ("file", "title", "short_title", "type", "date", "subject", "themes")
OPTIONAL_KEYS = ("layout", "executive_summary")

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

# Characters that Helvetica (WinAnsi) either lacks or that extract badly are mapped to
# plain ASCII. The en dash is kept: it is in WinAnsiEncoding and round-trips via pypdf.
CHAR_MAP = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2032": "'",
    "\u2033": '"',
    "\u2014": " - ",  # em dash
    "\u2015": " - ",
    "\u2012": "-",
    "\u2010": "-",
    "\u2011": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u202f": " ",
    "\u2007": " ",
    "\u200b": "",
    "\ufeff": "",
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\u2022": "-",
    "\u00b7": "-",
    "\u2192": "->",
}
KEEP_NON_LATIN1 = {"\u2013"}  # en dash

PAGE_W, PAGE_H = A4
MARGIN_X = 2.2 * cm
MARGIN_TOP = 2.4 * cm
MARGIN_BOTTOM = 2.2 * cm
COLUMN_GAP = 0.8 * cm
HEADER_Y = PAGE_H - 1.45 * cm
FOOTER_Y = 1.2 * cm

ACCENT = colors.HexColor("#1f3f66")
RULE_GREY = colors.HexColor("#8a8a8a")


class SourceError(Exception):
    """A malformed source file."""


# --------------------------------------------------------------------------- parsing


@dataclass
class Block:
    kind: str  # h1, h2, para, bullets, table, pagebreak
    text: str = ""
    items: list = field(default_factory=list)  # bullets: [str]; table: [[str]]
    line: int = 0


@dataclass
class Source:
    path: Path
    meta: dict
    blocks: list
    warnings: list


def normalise_text(text: str, path: Path, warnings: list) -> str:
    """Map typographic characters to ones Helvetica renders and pypdf extracts cleanly."""
    out = []
    bad = {}
    for ch in text:
        if ch in CHAR_MAP:
            out.append(CHAR_MAP[ch])
            continue
        if ch in KEEP_NON_LATIN1 or ch == "\n" or ch == "\t" or 32 <= ord(ch) < 127 or 160 <= ord(ch) < 256:
            out.append(" " if ch == "\t" else ch)
            continue
        decomposed = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        if decomposed:
            out.append(decomposed)
        else:
            out.append("?")
        bad[ch] = bad.get(ch, 0) + 1
    for ch, n in sorted(bad.items()):
        warnings.append(f"{path.name}: replaced character U+{ord(ch):04X} ({unicodedata.name(ch, '?')}) x{n}")
    return "".join(out)


def parse_front_matter(lines: list, path: Path) -> tuple[dict, int]:
    if not lines or lines[0].strip() != "---":
        raise SourceError(f"{path}: must start with a '---' front matter line")
    meta = {}
    for i in range(1, len(lines)):
        raw = lines[i].strip()
        if raw == "---":
            return meta, i + 1
        if not raw or raw.startswith("#"):
            continue
        if ":" not in raw:
            raise SourceError(f"{path}:{i + 1}: front matter line is not 'key: value': {raw!r}")
        key, value = raw.split(":", 1)
        key = key.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if key in meta:
            raise SourceError(f"{path}:{i + 1}: duplicate front matter key {key!r}")
        meta[key] = value
    raise SourceError(f"{path}: front matter is not closed with a '---' line")


def validate_meta(meta: dict, path: Path, warnings: list) -> dict:
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise SourceError(f"{path}: missing front matter key(s): {', '.join(missing)}")
    unknown = [k for k in meta if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if unknown:
        warnings.append(f"{path.name}: ignoring unknown front matter key(s): {', '.join(unknown)}")
    for k in ("file", "title", "short_title", "type", "date"):
        if not meta[k]:
            raise SourceError(f"{path}: front matter key {k!r} is empty")
    if meta["type"] not in TYPE_WORDS:
        raise SourceError(f"{path}: unknown type {meta['type']!r} (expected one of: {', '.join(TYPE_WORDS)})")
    m = re.fullmatch(r"(\d{4})-(\d{2})", meta["date"])
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise SourceError(f"{path}: date {meta['date']!r} is not YYYY-MM")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.pdf", meta["file"]):
        raise SourceError(f"{path}: file {meta['file']!r} must be a plain name ending in .pdf")
    if meta["file"][:-4] != path.stem:
        warnings.append(f"{path.name}: file {meta['file']!r} does not match the source name")
    themes = [t.strip() for t in meta["themes"].split(",") if t.strip()]
    bad_themes = [t for t in themes if t not in THEME_IDS]
    if bad_themes:
        raise SourceError(f"{path}: unknown theme id(s): {', '.join(bad_themes)}")
    layout = meta.get("layout", "one-column") or "one-column"
    if layout not in ("one-column", "two-column"):
        raise SourceError(f"{path}: layout {layout!r} must be one-column or two-column")
    es = (meta.get("executive_summary", "false") or "false").lower()
    if es not in ("true", "false", "yes", "no"):
        raise SourceError(f"{path}: executive_summary {es!r} must be true or false")
    return {
        "file": meta["file"],
        "title": meta["title"],
        "short_title": meta["short_title"],
        "type": meta["type"],
        "date": meta["date"],
        "year": int(m.group(1)),
        "month": int(m.group(2)),
        "subject": meta["subject"],
        "themes": themes,
        "layout": layout,
        "executive_summary": es in ("true", "yes"),
    }


NUMBERED_START = re.compile(r"^(\d+\.\s|\d+(\.\d+)+\.?\s)")
BULLET_START = re.compile(r"^\s*[-*+]\s+")
TABLE_SEP = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def split_row(line: str) -> list:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells = re.split(r"(?<!\\)\|", s)
    return [c.strip().replace("\\|", "|") for c in cells]


def parse_body(lines: list, first_line: int, path: Path, warnings: list) -> list:
    blocks: list = []
    para: list = []
    para_line = 0
    i = 0

    def flush_para():
        nonlocal para
        if para:
            blocks.append(Block("para", " ".join(s.strip() for s in para), line=para_line))
            para = []

    while i < len(lines):
        lineno = first_line + i + 1
        raw = lines[i].rstrip()
        s = raw.strip()
        if not s:
            flush_para()
            i += 1
            continue
        if re.fullmatch(r"<!--\s*pagebreak\s*-->", s, flags=re.I):
            flush_para()
            blocks.append(Block("pagebreak", line=lineno))
            i += 1
            continue
        if s.startswith("<!--"):
            # other comments are dropped (may span lines)
            flush_para()
            while i < len(lines) and "-->" not in lines[i]:
                i += 1
            i += 1
            continue
        hm = re.match(r"^(#{1,6})\s+(.*)$", s)
        if hm:
            flush_para()
            level = len(hm.group(1))
            if level > 2:
                warnings.append(f"{path.name}:{lineno}: heading level {level} rendered as a sub-heading")
            blocks.append(Block("h1" if level == 1 else "h2", hm.group(2).strip().rstrip("#").strip(), line=lineno))
            i += 1
            continue
        if s.startswith("|"):
            flush_para()
            rows = []
            start = lineno
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i].strip())
                i += 1
            if len(rows) < 2 or not TABLE_SEP.match(rows[1]):
                raise SourceError(f"{path}:{start}: pipe table needs a header row and a |---| separator row")
            header = split_row(rows[0])
            body = [split_row(r) for r in rows[2:]]
            ncol = len(header)
            for k, r in enumerate(body):
                if len(r) != ncol:
                    warnings.append(f"{path.name}:{start + 2 + k}: table row has {len(r)} cells, header has {ncol}")
                    body[k] = (r + [""] * ncol)[:ncol]
            blocks.append(Block("table", items=[header] + body, line=start))
            continue
        if BULLET_START.match(raw) and not re.match(r"^\s*\*\*", raw):
            flush_para()
            items = []
            start = lineno
            while i < len(lines):
                r = lines[i].rstrip()
                if not r.strip():
                    break
                if BULLET_START.match(r) and not re.match(r"^\s*\*\*", r):
                    items.append(BULLET_START.sub("", r, count=1).strip())
                elif r.strip().startswith(("|", "#", "<!--")):
                    break
                else:
                    items[-1] += " " + r.strip()
                i += 1
            blocks.append(Block("bullets", items=items, line=start))
            continue
        if para and NUMBERED_START.match(s):
            flush_para()
        if not para:
            para_line = lineno
        para.append(s)
        i += 1
    flush_para()
    return blocks


def load_source(path: Path) -> Source:
    warnings: list = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not valid UTF-8 ({e})") from e
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = normalise_text(text, path, warnings)
    lines = text.split("\n")
    meta_raw, body_start = parse_front_matter(lines, path)
    meta = validate_meta(meta_raw, path, warnings)
    blocks = parse_body(lines[body_start:], body_start, path, warnings)
    if not any(b.kind in ("para", "bullets", "table") for b in blocks):
        raise SourceError(f"{path}: has no body text")
    return Source(path, meta, blocks, warnings)


# --------------------------------------------------------------------------- inline markup


def inline(text: str) -> str:
    """Escape &, <, > then turn **bold** / *italic* into reportlab markup."""
    t = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    t = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])", r"<i>\1</i>", t)
    t = re.sub(r"(?<![\w_])__(?=\S)(.+?)(?<=\S)__(?![\w_])", r"<b>\1</b>", t)
    t = t.replace("\\*", "*")
    return t


def plain(text: str) -> str:
    """Heading / TOC text: drop emphasis markers."""
    return re.sub(r"\*{1,2}([^*]+)\*{1,2}", r"\1", text)


# --------------------------------------------------------------------------- styles


def make_styles() -> dict:
    base = dict(fontName="Helvetica", fontSize=11, leading=14.5, alignment=TA_LEFT)
    st = {
        "body": ParagraphStyle("body", spaceAfter=6.5, **base),
        "bullet": ParagraphStyle("bullet", leftIndent=16, bulletIndent=5, spaceAfter=3, **base),
        "h1": ParagraphStyle(
            "h1",
            fontName="Helvetica-Bold",
            fontSize=14,
            leading=18,
            spaceBefore=10,
            spaceAfter=7,
            textColor=ACCENT,
            keepWithNext=1,
        ),
        "h2": ParagraphStyle(
            "h2",
            fontName="Helvetica-Bold",
            fontSize=12,
            leading=15.5,
            spaceBefore=7,
            spaceAfter=5,
            textColor=ACCENT,
            keepWithNext=1,
        ),
        "cell": ParagraphStyle("cell", fontName="Helvetica", fontSize=9.5, leading=12),
        "cellhead": ParagraphStyle("cellhead", fontName="Helvetica-Bold", fontSize=9.5, leading=12),
        "title": ParagraphStyle(
            "title", fontName="Helvetica-Bold", fontSize=24, leading=30, textColor=ACCENT, spaceAfter=14
        ),
        "title_small": ParagraphStyle(
            "title_small", fontName="Helvetica-Bold", fontSize=20, leading=25, textColor=ACCENT, spaceAfter=8
        ),
        "publisher": ParagraphStyle("publisher", fontName="Helvetica-Bold", fontSize=13, leading=17, spaceAfter=6),
        "doctype": ParagraphStyle("doctype", fontName="Helvetica", fontSize=13, leading=17, spaceAfter=4),
        "date": ParagraphStyle("date", fontName="Helvetica", fontSize=12, leading=16, spaceAfter=18),
        "notice": ParagraphStyle("notice", fontName="Helvetica-Bold", fontSize=10.5, leading=14),
        "toctitle": ParagraphStyle(
            "toctitle", fontName="Helvetica-Bold", fontSize=16, leading=20, textColor=ACCENT, spaceAfter=12
        ),
        "toc0": ParagraphStyle("toc0", fontName="Helvetica", fontSize=11, leading=15, spaceBefore=4),
    }
    return st


# --------------------------------------------------------------------------- page furniture


class NumberedCanvas(rl_canvas.Canvas):
    """Defers page output until save() so every footer can say 'Page N of M'."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._saved_page_states = []

    def showPage(self):
        self._saved_page_states.append(dict(self.__dict__))
        self._startPage()

    def save(self):
        total = len(self._saved_page_states)
        for state in self._saved_page_states:
            self.__dict__.update(state)
            self.saveState()
            self.setFont("Helvetica", 9)
            self.setFillColor(colors.black)
            self.drawCentredString(PAGE_W / 2, FOOTER_Y, f"Page {self._pageNumber} of {total}")
            self.restoreState()
            super().showPage()
        super().save()


def draw_running_header(canv, doc):
    canv.saveState()
    canv.setFont("Helvetica", 9)
    canv.setFillColor(colors.black)
    canv.drawString(MARGIN_X, HEADER_Y, doc.meta["short_title"])
    canv.drawRightString(PAGE_W - MARGIN_X, HEADER_Y, HEADER_RIGHT)
    canv.setStrokeColor(RULE_GREY)
    canv.setLineWidth(0.5)
    canv.line(MARGIN_X, HEADER_Y - 5, PAGE_W - MARGIN_X, HEADER_Y - 5)
    canv.restoreState()


def no_header(canv, doc):
    pass


class CorpusDoc(BaseDocTemplate):
    def __init__(self, filename, meta, title_height=None, **kw):
        self.meta = meta
        super().__init__(
            filename,
            pagesize=A4,
            invariant=1,
            leftMargin=MARGIN_X,
            rightMargin=MARGIN_X,
            topMargin=MARGIN_TOP,
            bottomMargin=MARGIN_BOTTOM,
            title=meta["title"],
            author=PUBLISHER + " (fictional demonstration)",
            subject=(meta["subject"] or meta["title"]),
            creator="sscp-rag scripts/build_demo_corpus.py",
            keywords=", ".join(meta["themes"]),
            **kw,
        )
        w, h = self.width, self.height
        x0, y0 = self.leftMargin, self.bottomMargin
        two = meta["layout"] == "two-column"
        colw = (w - COLUMN_GAP) / 2

        def columns(top_height, idp):
            hgt = h - top_height
            if two:
                return [
                    Frame(
                        x0, y0, colw, hgt, id=f"{idp}L", leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0
                    ),
                    Frame(
                        x0 + colw + COLUMN_GAP,
                        y0,
                        colw,
                        hgt,
                        id=f"{idp}R",
                        leftPadding=0,
                        rightPadding=0,
                        topPadding=0,
                        bottomPadding=0,
                    ),
                ]
            return [Frame(x0, y0, w, hgt, id=f"{idp}1", leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)]

        templates = []
        if title_height is None:
            # a full title page, followed by body pages
            templates.append(
                PageTemplate(
                    id="title",
                    onPage=no_header,
                    frames=[
                        Frame(
                            x0, y0, w, h, id="titleframe", leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0
                        )
                    ],
                )
            )
        else:
            # title block at the top of page 1, the body below it
            top = Frame(
                x0,
                y0 + h - title_height,
                w,
                title_height,
                id="titleblock",
                leftPadding=0,
                rightPadding=0,
                topPadding=0,
                bottomPadding=0,
            )
            templates.append(PageTemplate(id="title", onPage=no_header, frames=[top] + columns(title_height, "first")))
        templates.append(
            PageTemplate(
                id="contents",
                onPage=draw_running_header,
                frames=[
                    Frame(x0, y0, w, h, id="tocframe", leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
                ],
            )
        )
        templates.append(PageTemplate(id="body", onPage=draw_running_header, frames=columns(0, "body")))
        self.addPageTemplates(templates)

    def afterFlowable(self, flowable):
        if isinstance(flowable, Paragraph) and getattr(flowable, "_toc_text", None):
            self.notify("TOCEntry", (0, flowable._toc_text, self.page))


class NoticeBox(Flowable):
    """The boxed fictional-document notice."""

    def __init__(self, style, width=None):
        super().__init__()
        self.para = Paragraph(inline(FICTIONAL_NOTICE), style)
        self.pad = 9
        self._w = width

    def wrap(self, aw, ah):
        w = self._w or aw
        _, ph = self.para.wrap(w - 2 * self.pad, ah)
        self.width, self.height = w, ph + 2 * self.pad
        return self.width, self.height

    def draw(self):
        c = self.canv
        c.saveState()
        c.setFillColor(colors.HexColor("#fff4d6"))
        c.setStrokeColor(colors.HexColor("#9a6700"))
        c.setLineWidth(1.5)
        c.rect(0, 0, self.width, self.height, stroke=1, fill=1)
        c.restoreState()
        self.para.drawOn(c, self.pad, self.pad)


def month_year(meta) -> str:
    return f"{MONTHS[meta['month'] - 1]} {meta['year']}"


def type_words(meta) -> str:
    words = TYPE_WORDS[meta["type"]]
    if meta["executive_summary"]:
        words += ": Executive Summary"
    return words


def title_flowables(meta, st, compact: bool) -> list:
    out = []
    if not compact:
        out.append(Spacer(1, 5 * cm))
    out.append(Paragraph(inline(meta["title"]), st["title_small"] if compact else st["title"]))
    out.append(Paragraph(inline(PUBLISHER), st["publisher"]))
    out.append(Paragraph(inline(type_words(meta)), st["doctype"]))
    out.append(Paragraph(month_year(meta), ParagraphStyle("d2", parent=st["date"], spaceAfter=10 if compact else 18)))
    out.append(NoticeBox(st["notice"]))
    if compact:
        out.append(Spacer(1, 14))
    return out


def flowable_height(flowables, width) -> float:
    total = 0.0
    prev_after = 0.0
    for i, f in enumerate(flowables):
        _, h = f.wrap(width, PAGE_H)
        before = f.getSpaceBefore() if i else 0
        total += h + max(before, prev_after) if i else h
        prev_after = f.getSpaceAfter()
    return total


# --------------------------------------------------------------------------- tables


def column_widths(rows: list, avail: float) -> list:
    ncol = len(rows[0])
    # weight each column by its longest cell (capped) and the length of its longest word
    weights, mins = [], []
    for c in range(ncol):
        cells = [r[c] for r in rows]
        longest = max(len(plain(x)) for x in cells)
        longword = max((len(w) for x in cells for w in plain(x).split()), default=4)
        weights.append(min(max(longest, 6), 45) + 4)
        mins.append(min(longword * 5.6 + 12, avail / ncol))
    total = sum(weights)
    widths = [avail * w / total for w in weights]
    # make sure no column is narrower than its longest word; take the space from the widest
    for _ in range(ncol):
        short = [i for i in range(ncol) if widths[i] < mins[i]]
        if not short:
            break
        for i in short:
            need = mins[i] - widths[i]
            j = max(range(ncol), key=lambda k: widths[k] - mins[k])
            give = min(need, max(widths[j] - mins[j], 0))
            widths[i] += give
            widths[j] -= give
    return widths


def make_table(rows: list, st: dict, avail: float) -> Table:
    widths = column_widths(rows, avail)
    data = [[Paragraph(inline(c), st["cellhead"]) for c in rows[0]]]
    for r in rows[1:]:
        data.append([Paragraph(inline(c), st["cell"]) for c in r])
    t = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
    t.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#555555")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde5ef")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 4),
                ("RIGHTPADDING", (0, 0), (-1, -1), 4),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    return t


# --------------------------------------------------------------------------- bullets and contents


class BulletParagraph(Paragraph):
    """A list item whose bullet is drawn as a small filled circle, not as a glyph.

    Helvetica's bullet glyph extracts as a control character with pypdf, so the
    bullet is graphics only and the item's text extracts cleanly.
    """

    _continued = False

    def split(self, aw, ah):
        parts = super().split(aw, ah)
        for p in parts[1:]:
            p._continued = True
        return parts

    def draw(self):
        if not self._continued:
            st = self.style
            c = self.canv
            c.saveState()
            c.setFillColor(colors.black)
            y = self.height - st.leading + (st.leading - st.fontSize) / 2 + st.fontSize * 0.6
            c.circle(st.leftIndent - 9, y, 1.9, stroke=0, fill=1)
            c.restoreState()
        super().draw()


class TocLine(Flowable):
    """One contents entry: heading text, dotted leader (graphics), page number.

    The heading and its page number are one text object so they extract as one line.
    """

    def __init__(self, text, page, style):
        super().__init__()
        self.text, self.page, self.style = text, str(page), style
        self.num_w = 1.3 * cm

    def wrap(self, aw, ah):
        st = self.style
        self._aw = aw
        self._lines = simpleSplit(self.text, st.fontName, st.fontSize, aw - self.num_w - 0.6 * cm) or [""]
        self.width, self.height = aw, st.leading * len(self._lines) + st.spaceBefore
        return self.width, self.height

    def draw(self):
        st, c = self.style, self.canv
        y0 = self.height - st.spaceBefore - st.fontSize
        t = c.beginText(0, y0)
        t.setFont(st.fontName, st.fontSize, st.leading)
        for line in self._lines[:-1]:
            t.textLine(line)
        last = self._lines[-1]
        t.textOut(last + " ")
        pw = stringWidth(self.page, st.fontName, st.fontSize)
        t.moveCursor(self._aw - pw, 0)
        t.textOut(self.page)
        c.drawText(t)
        x_from = stringWidth(last, st.fontName, st.fontSize) + 8
        x_to = self._aw - pw - 6
        y_dots = y0 - (len(self._lines) - 1) * st.leading + 1.2
        c.saveState()
        c.setFillColor(colors.HexColor("#666666"))
        x = x_to
        while x > x_from:
            c.circle(x, y_dots, 0.55, stroke=0, fill=1)
            x -= 4.5
        c.restoreState()


class ContentsTable(TableOfContents):
    """reportlab TableOfContents, drawn with TocLine entries (clean text extraction)."""

    def wrap(self, availWidth, availHeight):
        entries = self._lastEntries or [(0, "Contents placeholder", 0, None)]
        rows = [[TocLine(text, page, self.getLevelStyle(level))] for (level, text, page, _key) in entries]
        self._table = Table(
            rows,
            colWidths=(availWidth,),
            style=TableStyle(
                [
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                    ("TOPPADDING", (0, 0), (-1, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
                ]
            ),
        )
        self.width, self.height = self._table.wrapOn(self.canv, availWidth, availHeight)
        return self.width, self.height


# --------------------------------------------------------------------------- rendering


def body_flowables(src: Source, st: dict, avail: float) -> list:
    out = []
    for b in src.blocks:
        if b.kind == "pagebreak":
            out.append(PageBreak())
        elif b.kind in ("h1", "h2"):
            p = Paragraph(inline(b.text), st[b.kind])
            if b.kind == "h1":
                p._toc_text = plain(b.text)
                out.append(CondPageBreak(3 * cm))
            out.append(p)
        elif b.kind == "para":
            out.append(Paragraph(inline(b.text), st["body"]))
        elif b.kind == "bullets":
            items = [BulletParagraph(inline(x), st["bullet"]) for x in b.items]
            if items:
                # a little space after the list so the next paragraph is clearly separate
                items[-1].style = ParagraphStyle("bullet_last", parent=st["bullet"], spaceAfter=7)
            out.extend(items)
        elif b.kind == "table":
            out.append(Spacer(1, 3))
            out.append(make_table(b.items, st, avail))
            out.append(Spacer(1, 9))
    return out


def is_briefing(meta) -> bool:
    return meta["type"] == "7-minute briefing"


def render(src: Source, out_path: Path) -> None:
    meta = src.meta
    st = make_styles()
    briefing = is_briefing(meta)
    with_contents = not briefing and not meta["executive_summary"]

    full_w = PAGE_W - 2 * MARGIN_X
    two = meta["layout"] == "two-column"
    col_w = (full_w - COLUMN_GAP) / 2 if two else full_w

    story: list = []
    title_height = None
    if briefing:
        title = title_flowables(meta, st, compact=True)
        title_height = flowable_height(title, full_w) + 2
        story.extend(title)
        story.append(FrameBreak())
        story.append(NextPageTemplate("body"))
    else:
        story.extend(title_flowables(meta, st, compact=False))
        if with_contents:
            story.append(NextPageTemplate("contents"))
            story.append(PageBreak())
            story.append(Paragraph("Contents", st["toctitle"]))
            toc = ContentsTable(levelStyles=[st["toc0"]])
            story.append(toc)
        story.append(NextPageTemplate("body"))
        story.append(PageBreak())

    story.extend(body_flowables(src, st, col_w))

    doc = CorpusDoc(str(out_path), meta, title_height=title_height)
    if with_contents:
        doc.multiBuild(story, canvasmaker=NumberedCanvas)
    else:
        doc.build(story, canvasmaker=NumberedCanvas)


def page_count(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(str(path)).pages)


def manifest_entry(meta, pages: int) -> dict:
    return {
        "file": meta["file"],
        "title": meta["title"],
        "short_title": meta["short_title"],
        "type": meta["type"],
        "date": meta["date"],
        "year": meta["year"],
        "subject": meta["subject"],
        "source_url": None,
        "themes": meta["themes"],
        "executive_summary": meta["executive_summary"],
        "fictional": True,
        "pages": pages,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Render the fictional demo corpus (Markdown sources) to PDFs and manifest.json."
    )
    ap.add_argument(
        "--src",
        type=Path,
        default=DEFAULT_SRC,
        help=f"folder of *.md sources (default: {DEFAULT_SRC.relative_to(REPO_ROOT)})",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder for the PDFs and manifest.json (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})",
    )
    args = ap.parse_args(argv)

    if not args.src.is_dir():
        print(f"error: source folder {args.src} does not exist", file=sys.stderr)
        return 2
    sources = sorted(args.src.glob("*.md"))
    if not sources:
        print(f"error: no *.md sources in {args.src}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    errors: list = []
    loaded: list = []
    seen_files: dict = {}
    for path in sources:
        try:
            src = load_source(path)
        except SourceError as e:
            errors.append(str(e))
            continue
        for w in src.warnings:
            print(f"warning: {w}", file=sys.stderr)
        f = src.meta["file"]
        if f in seen_files:
            errors.append(f"{path}: output file {f!r} is also produced by {seen_files[f].name}")
            continue
        seen_files[f] = path
        loaded.append(src)

    entries = []
    total_pages = 0
    for src in sorted(loaded, key=lambda s: s.meta["file"]):
        out_path = args.out / src.meta["file"]
        try:
            render(src, out_path)
        except Exception as e:  # a layout failure in one document should not stop the rest
            errors.append(f"{src.path}: rendering failed: {type(e).__name__}: {e}")
            continue
        n = page_count(out_path)
        total_pages += n
        entries.append(manifest_entry(src.meta, n))
        print(f"{src.meta['file']}: {n} pages")

    entries.sort(key=lambda e: e["file"])
    manifest = {"documents": entries}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"total: {len(entries)} documents, {total_pages} pages")

    stale = sorted(p.name for p in args.out.glob("*.pdf") if p.name not in seen_files)
    for name in stale:
        print(f"warning: {args.out / name} has no source file; not in the manifest", file=sys.stderr)

    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        print(f"error: {len(errors)} source file(s) could not be rendered", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
