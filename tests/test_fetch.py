"""sscp-rag fetch against a real HTTP server on 127.0.0.1 serving a site shaped like the SSCP
"Learning from Local Reviews" page (titles from the design guide), with real PDFs made by
reportlab and the hostile cases the issue lists."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from sscp_rag.cli import cli
from sscp_rag.corpus import load_manifests
from sscp_rag.errors import FetchError
from sscp_rag.fetch import (
    DEFAULT_BRIEFINGS_URL,
    DEFAULT_START_URL,
    Failure,
    FetchOptions,
    extract_links,
    fetch,
    infer_review_type,
    safe_file_name,
    summary_lines,
)
from sscp_rag.http import AddressPolicy, make_client
from sscp_rag.records import REVIEW_TYPES
from sscp_rag.settings import Settings
from sscp_rag.themes import THEME_IDS

MAIN = "/case-reviews/learning-from-local-reviews/"
BRIEFINGS = "/resources/7-minute-briefings/"
CAP = 64 * 1024  # the test's per-file size cap


def make_pdf(title: str, body: str) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    c.setFont("Helvetica-Bold", 14)
    c.drawString(60, 780, title)
    c.setFont("Helvetica", 11)
    y = 750
    for line in body.split("\n"):
        c.drawString(60, y, line)
        y -= 16
    c.showPage()
    c.save()
    return buf.getvalue()


PDF_DOCS = {
    # path: (title on the page, body text)
    "/wp-content/uploads/2021/01/Thematic-Review-of-Adolescent-Suicide-FINAL-Dec-2020.pdf": (
        "Thematic Review of Adolescent Suicide FINAL Dec 2020",
        "Young people who died by suicide had often self-harmed before.\nSchools and CAMHS shared information late.",
    ),
    "/wp-content/uploads/2021/02/Child-B-Final-report-Jan-2021.pdf": (
        "Child B Final report Jan 2021",
        "Child B lived with neglect for many years.\nProfessionals did not see the cumulative harm.",
    ),
    "/wp-content/uploads/2020/12/CDRP-SUDI-thematic-review.pdf": (
        "Child Death Review Partnership SUDI thematic review",
        "Unsafe sleep and co-sleeping featured in most deaths.\nSafer sleep advice was inconsistent.",
    ),
    "/wp-content/uploads/2020/12/SUDI-Infographic-Dec-2020.pdf": (
        "SUDI Infographic Dec 2020",
        "Safer sleep: back to sleep, clear cot, smoke free.\nCo-sleeping after alcohol raises risk.",
    ),
    "/wp-content/uploads/2019/05/scr-family-m.pdf": (
        "SCR Family M",
        "Family M moved between four local authorities.\nRecords did not follow the children.",
    ),
    "/wp-content/uploads/2019/03/DHR-Doris-Executive-Summary.pdf": (
        "DHR Doris Executive Summary",
        "Doris was killed by her partner.\nCoercive control had been reported to the GP twice.",
    ),
    "/wp-content/uploads/2017/05/SCR-Child-G-final.pdf": (
        "SCR Child G",
        "Published June 2017.\nChild G was not seen alone by any professional.\nThe voice of the child was missing.",
    ),
    "/scr-child-d.pdf": (
        "SCR Child D",
        "Child D was bruised as a non-mobile baby.\nBruising in non-mobile infants needs referral.",
    ),
    "/wp-content/uploads/2015/report.pdf": (
        "Report on good practice in SSCP Partnership Reviews",
        "Good practice seen in reviews from 2010 to 2015.\nStrong supervision and challenge helped.",
    ),
    "/wp-content/uploads/2019/09/7MB-Professional-Curiosity.pdf": (
        "7 Minute Briefing: Professional Curiosity (September 2019)",
        "Professional curiosity means asking what lies behind what we are told.\nRespectful uncertainty helps.",
    ),
    "/briefings/2020/report.pdf": (
        "7 Minute Briefing: Neglect",
        "Neglect is the most common reason for a child protection plan.\nUse the graded care profile.",
    ),
    "/wp-content/uploads/2021/03/7MB-Safer-Sleep.pdf": (
        "7 Minute Briefing: Safer Sleep",
        "Every contact is a chance to talk about safer sleep.\nAsk where the baby sleeps at night.",
    ),
    # a real file whose name smuggles a path: saved inside dest under its last part
    "/files/..%2F..%2Fscr-child-a-summary.pdf": (
        "SCR Child A : Executive Summary",
        "Child A was seen by eleven agencies.\nNone of them held the whole picture.",
    ),
    # served, but only behind excluded links: must never be saved
    "/privacy.pdf": ("Privacy notice", "A footer link the crawler does not follow."),
    "/about/annual-report-2020.pdf": ("Annual report 2020", "Behind a navigation link, not followed."),
    "/private/SSCP-Thematic-Review-of-Surrey-SCRs.pdf": ("Private", "Disallowed by robots.txt."),
}

EXPECTED_NEW = {
    "thematic-review-of-adolescent-suicide-final-dec-2020.pdf": "thematic",
    "child-b-final-report-jan-2021.pdf": "LCSPR",
    "cdrp-sudi-thematic-review.pdf": "SUDI",
    "sudi-infographic-dec-2020.pdf": "infographic",
    "scr-family-m.pdf": "SCR",
    "dhr-doris-executive-summary.pdf": "DHR",
    "scr-child-g.pdf": "SCR",
    "report.pdf": "good-practice",
    "7mb-professional-curiosity.pdf": "7-minute briefing",
    "7mb-safer-sleep.pdf": "7-minute briefing",
    "scr-child-a-summary.pdf": "SCR",
    # plus scr-child-d-<hash>.pdf (SCR) and report-<hash>.pdf (7-minute briefing), whose names
    # collide with a user's own file and with the good-practice report
}


def main_page(base: str) -> str:
    return f"""<!DOCTYPE html>
<html><head><title>Learning from Local Reviews - Surrey Safeguarding Children Partnership</title></head>
<body>
<header><nav>
  <a href="/">Home</a> <a href="/about/">About us</a>
  <a href="{BRIEFINGS}">7 Minute Briefings</a>
</nav></header>
<main>
<h1>Learning from Local Reviews</h1>
<h2>Thematic reviews and LCSPRs</h2>
<ul>
 <li><a href="{base}/wp-content/uploads/2021/01/Thematic-Review-of-Adolescent-Suicide-FINAL-Dec-2020.pdf">
     Thematic Review of Adolescent Suicide FINAL Dec 2020</a></li>
 <li><a href="../../wp-content/uploads/2021/02/Child-B-Final-report-Jan-2021.pdf">Child B Final report Jan 2021</a></li>
 <li><a href="/wp-content/uploads/2020/12/CDRP-SUDI-thematic-review.pdf">Child Death Review Partnership SUDI
     thematic review</a></li>
 <li><a href="/wp-content/uploads/2020/12/SUDI-Infographic-Dec-2020.pdf">SUDI Infographic Dec 2020</a></li>
 <li><a href="/case-reviews/scr-family-m/">SCR Family M</a></li>
 <li><a href="/wp-content/uploads/2019/03/DHR-Doris-Executive-Summary.pdf">DHR Doris Executive Summary</a></li>
 <li><a href="/private/SSCP-Thematic-Review-of-Surrey-SCRs.pdf">SSCP Thematic Review of Surrey SCRs and Case
     Reviews</a></li>
 <li><a href="/wp-content/uploads/2019/01/Thematic-Review-2019.pdf">Thematic Review 2019</a></li>
 <li><a href="/case-reviews/removed-review/">SCR Removed</a> (a page that is gone)</li>
 <li><a href="/private/reviews/">Private reviews</a> (a page robots.txt disallows)</li>
</ul>
<h2>Serious case reviews</h2>
<ul>
 <li><a href="/wp-content/uploads/2018/06/SCR-Exec-Summary-HH-II-JJ.pdf">SCR Executive Summary in relation to
     three children HH, II &amp; JJ</a></li>
 <li><a href="/old/SCR-Child-G.pdf">SCR Child G</a></li>
 <li><a href="/wp-content/uploads/2016/SCR-Baby-LL.pdf">SCR Baby LL</a></li>
 <li><a href="/files/..%2F..%2Fscr-child-a-summary.pdf">SCR Child A : Executive Summary</a></li>
 <li><a href="../../../../../scr-child-d.pdf">SCR Child D</a></li>
 <li><a href="/wp-content/uploads/2015/report.pdf">Report on good practice in SSCP Partnership Reviews</a></li>
 <li><a href="/old/SCR-Child-G.pdf#page=2">SCR Child G</a> (duplicate link)</li>
 <li><a href="/wp-content/uploads/2018/Audit-full-data.pdf">Multi-agency audit 2018 (full data)</a></li>
</ul>
</main>
<footer><a href="/privacy.pdf">Privacy notice</a></footer>
</body></html>"""


BRIEFINGS_PAGE = f"""<!DOCTYPE html><html><body>
<nav><a href="{MAIN}">Learning from Local Reviews</a></nav>
<main><h1>7 Minute Briefings</h1>
 <p><a href="/wp-content/uploads/2019/09/7MB-Professional-Curiosity.pdf">7 Minute Briefing: Professional
    Curiosity (September 2019)</a></p>
 <p><a href="/briefings/2020/report.pdf">7 Minute Briefing: Neglect</a></p>
 <p><a href="{BRIEFINGS}safer-sleep/">7 Minute Briefing: Safer Sleep</a></p>
 <p>See also <a href="/wp-content/uploads/2019/03/DHR-Doris-Executive-Summary.pdf">the Doris DHR</a>.</p>
</main></body></html>"""

SAFER_SLEEP_PAGE = """<!DOCTYPE html><html><body><main><h1>7 Minute Briefing: Safer Sleep</h1>
<p>Our briefing on safer sleep. <a href="/wp-content/uploads/2021/03/7MB-Safer-Sleep.pdf">Download</a></p>
</main></body></html>"""

FAMILY_M_PAGE = """<!DOCTYPE html><html><body><main><h1>SCR Family M</h1>
<p>The review was published in May 2019. <a href="/wp-content/uploads/2019/05/scr-family-m.pdf">Download</a></p>
</main></body></html>"""

ABOUT_PAGE = """<html><body><main><a href="/about/annual-report-2020.pdf">Annual report 2020</a></main></body></html>"""

REDIRECTS_PAGE = """<main><a href="/loop/0.pdf">SCR Loop</a> <a href="/to-private.pdf">SCR Hidden</a>
<a href="/to-ftp.pdf">SCR Ftp</a></main>"""

HTML_AS_PDF = b"<!DOCTYPE html><html><body><h1>Page not found</h1>" + b"x" * 2000 + b"</body></html>"


@dataclass
class Site:
    """What the test server serves; mutable so a test can change a file between runs."""

    files: dict[str, bytes]
    base: str = ""
    log: list[dict] = field(default_factory=list)
    flaky_left: int = 1  # the SUDI infographic answers 503 this many times first
    trickle_pause: bool = True
    briefings_link: bool = True  # whether the main page links to the 7 Minute Briefings page
    trickle_release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self, since: int = 0) -> list[dict]:
        with self.lock:
            return list(self.log[since:])


ETAG_PATH = "/wp-content/uploads/2019/03/DHR-Doris-Executive-Summary.pdf"
LASTMOD_PATH = "/wp-content/uploads/2020/12/CDRP-SUDI-thematic-review.pdf"
LASTMOD = "Tue, 01 Dec 2020 10:00:00 GMT"
FLAKY_PATH = "/wp-content/uploads/2020/12/SUDI-Infographic-Dec-2020.pdf"


class Handler(BaseHTTPRequestHandler):
    site: Site  # set per server
    entry: dict  # this request's line in site.log

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(
        self,
        status: int,
        body: bytes = b"",
        ctype: str = "application/pdf",
        headers: dict[str, str] | None = None,
        length: bool = True,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout, size cap): that is what the test wants
        with self.site.lock:
            # This request's own entry: with a threaded server, log[-1] may be a later request's.
            self.entry["status"] = status

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        site = self.site
        path = self.path
        self.entry = {
            "path": path,
            "ua": self.headers.get("User-Agent", ""),
            "if_none_match": self.headers.get("If-None-Match"),
            "if_modified_since": self.headers.get("If-Modified-Since"),
        }
        with site.lock:
            site.log.append(self.entry)
        html = "text/html; charset=utf-8"
        if path == "/robots.txt":
            return self._send(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
        if path == MAIN:
            page = main_page(site.base)
            if not site.briefings_link:
                page = page.replace(f'<a href="{BRIEFINGS}">7 Minute Briefings</a>', "")
            return self._send(200, page.encode(), html)
        if path == BRIEFINGS:
            return self._send(200, BRIEFINGS_PAGE.encode(), html)
        if path == BRIEFINGS + "safer-sleep/":
            return self._send(200, SAFER_SLEEP_PAGE.encode(), html)
        if path == "/case-reviews/scr-family-m/":
            return self._send(200, FAMILY_M_PAGE.encode(), html)
        if path == "/about/":
            return self._send(200, ABOUT_PAGE.encode(), html)
        if path == "/slow/":
            return self._send(200, b'<main><a href="/slow.pdf">SCR Slow</a></main>', html)
        if path == "/slow.pdf":
            time.sleep(1.5)
            return self._send(200, site.files["/scr-child-d.pdf"])
        if path == "/redirects/":
            return self._send(200, REDIRECTS_PAGE.encode(), html)
        if path.startswith("/loop/"):
            return self._send(302, b"", "text/html", {"Location": f"/loop/{int(path[6:-4]) + 1}.pdf"})
        if path == "/to-private.pdf":
            return self._send(302, b"", "text/html", {"Location": "/private/SSCP-Thematic-Review-of-Surrey-SCRs.pdf"})
        if path == "/to-ftp.pdf":
            return self._send(302, b"", "text/html", {"Location": "ftp://127.0.0.1/x.pdf"})
        if path == "/trickle/":
            return self._send(200, b'<main><a href="/trickle.pdf">SCR Trickle</a></main>', html)
        if path == "/trickle.pdf":  # half a PDF, then a long pause: the client is killed meanwhile
            body = site.files["/scr-child-d.pdf"]
            self.send_response(200)
            self.send_header("Content-Type", "application/pdf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if site.trickle_pause:
                    site.trickle_release.wait(60)
                self.wfile.write(body[len(body) // 2 :])
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if path == "/old/SCR-Child-G.pdf":
            return self._send(302, b"", "text/html", {"Location": "/wp-content/uploads/2017/05/SCR-Child-G-final.pdf"})
        if path == "/wp-content/uploads/2018/06/SCR-Exec-Summary-HH-II-JJ.pdf":
            return self._send(200, HTML_AS_PDF, "application/pdf")
        if path == "/wp-content/uploads/2016/SCR-Baby-LL.pdf":  # oversized, no Content-Length
            return self._send(200, b"%PDF-1.4\n" + b"0" * (3 * CAP), length=False)
        if path == "/wp-content/uploads/2018/Audit-full-data.pdf":  # oversized, declared
            return self._send(200, b"%PDF-1.4\n" + b"0" * (2 * CAP))
        if path == FLAKY_PATH:
            with site.lock:
                flaky = site.flaky_left > 0
                site.flaky_left -= 1
            if flaky:
                return self._send(503, b"busy", "text/plain", {"Retry-After": "0"})
        if path in site.files:
            body = site.files[path]
            headers: dict[str, str] = {}
            if path == ETAG_PATH:
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                headers["ETag"] = etag
                if self.headers.get("If-None-Match") == etag:
                    return self._send(304, b"", headers=headers, length=False)
            if path == LASTMOD_PATH:
                headers["Last-Modified"] = LASTMOD
                if self.headers.get("If-Modified-Since") == LASTMOD:
                    return self._send(304, b"", headers=headers, length=False)
            return self._send(200, body, headers=headers)
        return self._send(404, b"<h1>Not found</h1>", "text/html")


@pytest.fixture(scope="module")
def pdfs() -> dict[str, bytes]:
    return {path: make_pdf(title, body) for path, (title, body) in PDF_DOCS.items()}


@pytest.fixture
def site(pdfs: dict[str, bytes]) -> Iterator[Site]:
    s = Site(files=dict(pdfs))
    handler = type("BoundHandler", (Handler,), {"site": s})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    s.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield s
    finally:
        s.trickle_release.set()
        server.shutdown()
        server.server_close()


def opts(**kw) -> FetchOptions:
    base = {"max_bytes": CAP, "delay": 0.0, "backoff": 0.0, "progress": False, "timeout": 10.0}
    return FetchOptions(**{**base, **kw})


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


USER_FILE = make_pdf("My own notes on Child D", "A practitioner's own copy, not from the website.")


def first_run(site: Site, tmp_path: Path):
    dest = tmp_path / "corpus" / "sscp"
    dest.mkdir(parents=True)
    (dest / "scr-child-d.pdf").write_bytes(USER_FILE)  # a user's file with a name the site also uses
    summary = fetch([site.base + MAIN], dest, opts())
    return dest, summary


# --------------------------------------------------------------------------------------------


def test_fetch_site_files_manifest_and_summary(site: Site, tmp_path: Path) -> None:
    dest, summary = first_run(site, tmp_path)
    files = {f.file: f for f in summary.new}

    # files: the expected new ones, plus the two that got a hash suffix instead of clobbering
    assert set(EXPECTED_NEW) <= set(files)
    suffixed = sorted(set(files) - set(EXPECTED_NEW))
    assert len(suffixed) == 2 and suffixed[0].startswith("report-") and suffixed[1].startswith("scr-child-d-")
    assert (dest / "scr-child-d.pdf").read_bytes() == USER_FILE  # the user's file is intact
    assert (dest / suffixed[1]).read_bytes() == site.files["/scr-child-d.pdf"]
    assert (dest / "report.pdf").read_bytes() == site.files["/wp-content/uploads/2015/report.pdf"]
    assert (dest / suffixed[0]).read_bytes() == site.files["/briefings/2020/report.pdf"]
    assert (dest / "scr-child-g.pdf").read_bytes() == site.files["/wp-content/uploads/2017/05/SCR-Child-G-final.pdf"]
    on_disk = {p.name for p in dest.iterdir()}
    assert on_disk == set(files) | {"scr-child-d.pdf", "manifest.json", ".corpus.lock"}  # no temp files
    assert all((dest / f).read_bytes().startswith(b"%PDF-") for f in files)
    assert summary.updated == [] and summary.unchanged == []

    # nothing outside dest: the tmp folder holds only dest; the name that smuggled a path kept its last part
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        f"corpus/sscp/{n}" for n in on_disk
    )
    assert (dest / "scr-child-a-summary.pdf").read_bytes() == site.files["/files/..%2F..%2Fscr-child-a-summary.pdf"]

    # failures, each with its reason
    reasons = {f.title: f.reason for f in summary.failed}
    assert set(reasons) == {
        "Thematic Review 2019",
        "SCR Executive Summary in relation to three children HH, II & JJ",
        "SCR Baby LL",
        "Multi-agency audit 2018 (full data)",
    }
    assert reasons["Thematic Review 2019"] == "HTTP 404 Not Found"
    assert reasons["SCR Executive Summary in relation to three children HH, II & JJ"].startswith("not a PDF")
    assert "cap" in reasons["SCR Baby LL"] and "stopped" in reasons["SCR Baby LL"]
    assert "too large" in reasons["Multi-agency audit 2018 (full data)"]
    assert set(summary.robots_skipped) == {
        site.base + "/private/SSCP-Thematic-Review-of-Surrey-SCRs.pdf",
        site.base + "/private/reviews/",
    }
    assert summary.duplicates == 2  # SCR Child G twice; the Doris DHR on both pages
    assert summary.ok and summary.start_failures == []
    assert summary.page_failures == [
        Failure(site.base + "/case-reviews/removed-review/", "SCR Removed", "HTTP 404 Not Found")
    ]
    assert set(summary.pages_read) == {
        site.base + p for p in (MAIN, BRIEFINGS, BRIEFINGS + "safer-sleep/", "/case-reviews/scr-family-m/")
    }

    # what the server saw: robots honoured, nav/footer links never requested,
    # the 503 retried, the User-Agent names the tool and version
    log = site.requests()
    paths = [r["path"] for r in log]
    assert not any(p.startswith("/private/") for p in paths)
    assert "/privacy.pdf" not in paths and "/about/" not in paths
    assert [r["status"] for r in log if r["path"] == FLAKY_PATH] == [503, 200]
    assert paths.count("/robots.txt") == 1
    assert all(r["ua"].startswith("sscp-rag/0.1.0 (+") for r in log)

    # the manifest: corpus format plus provenance
    data = json.loads((dest / "manifest.json").read_text())
    entries = {e["file"]: e for e in data["documents"]}
    assert set(entries) == set(files)
    for name, e in entries.items():
        assert e["type"] in REVIEW_TYPES and e["fictional"] is False
        assert e["sha256"] == hashlib.sha256((dest / name).read_bytes()).hexdigest()
        assert e["source_url"].startswith(site.base) and e["linked_from"].startswith(site.base)
        assert e["fetched_at"].endswith("Z") and set(e["themes"]) <= set(THEME_IDS)
        expected_type = EXPECTED_NEW.get(name)
        if expected_type:
            assert e["type"] == expected_type, (name, e["title"])
    by_title = {e["title"]: e for e in entries.values()}
    assert by_title["SCR Child G"]["type"] == "SCR"
    assert by_title["SCR Child G"]["year"] == 2017  # not in the title: from the PDF's first page
    assert by_title["SCR Family M"]["year"] is None  # nowhere to be found: left empty, not guessed
    assert by_title["DHR Doris Executive Summary"]["type"] == "DHR"
    assert by_title["DHR Doris Executive Summary"]["executive_summary"] is True
    assert by_title["DHR Doris Executive Summary"]["etag"]
    assert by_title["Child Death Review Partnership SUDI thematic review"]["type"] == "SUDI"
    assert by_title["Child Death Review Partnership SUDI thematic review"]["last_modified"] == LASTMOD
    assert by_title["7 Minute Briefing: Neglect"]["type"] == "7-minute briefing"
    assert by_title["SUDI Infographic Dec 2020"]["type"] == "infographic"
    assert by_title["SUDI Infographic Dec 2020"]["year"] == 2020
    assert by_title["SUDI Infographic Dec 2020"]["date"] == "2020-12"
    assert by_title["Report on good practice in SSCP Partnership Reviews"]["type"] == "good-practice"
    assert by_title["Child B Final report Jan 2021"]["subject"] == "Child B"
    # the page that holds the PDF link: title from the link that led there, provenance = that page
    fam = by_title["SCR Family M"]
    assert fam["linked_from"] == site.base + "/case-reviews/scr-family-m/"
    assert fam["source_url"] == site.base + "/wp-content/uploads/2019/05/scr-family-m.pdf"
    assert by_title["7 Minute Briefing: Safer Sleep"]["linked_from"] == site.base + BRIEFINGS + "safer-sleep/"
    assert by_title["SCR Child G"]["source_url"] == site.base + "/old/SCR-Child-G.pdf"
    assert by_title["Thematic Review of Adolescent Suicide FINAL Dec 2020"]["linked_from"] == site.base + MAIN

    # the corpus reader takes the manifest as it is (provenance keys ignored)
    metas = load_manifests(dest)
    assert metas["dhr-doris-executive-summary.pdf"].type == "DHR"
    assert metas["7mb-safer-sleep.pdf"].source_url == site.base + "/wp-content/uploads/2021/03/7MB-Safer-Sleep.pdf"
    assert not metas["scr-family-m.pdf"].inferred

    text = "\n".join(summary_lines(summary))
    assert "13 new, 0 updated, 0 unchanged, 4 failed, 2 skipped by robots.txt" in text
    assert "HTTP 404 Not Found" in text


def test_second_run_downloads_nothing_and_a_change_is_an_update(site: Site, tmp_path: Path) -> None:
    dest, first = first_run(site, tmp_path)
    before = snapshot(dest)
    mark = len(site.requests())

    second = fetch([site.base + MAIN], dest, opts())
    assert second.new == [] and second.updated == []
    assert sorted(f.file for f in second.unchanged) == sorted(f.file for f in first.new)
    assert snapshot(dest) == before  # not a byte changed, manifest included
    log = site.requests(mark)
    doris = [r for r in log if r["path"] == ETAG_PATH]
    assert len(doris) == 1 and doris[0]["if_none_match"] and doris[0]["status"] == 304
    sudi = [r for r in log if r["path"] == LASTMOD_PATH]
    assert sudi[0]["if_modified_since"] == LASTMOD and sudi[0]["status"] == 304

    # the site replaces one report: the next run updates that file only, atomically
    path = "/wp-content/uploads/2021/01/Thematic-Review-of-Adolescent-Suicide-FINAL-Dec-2020.pdf"
    site.files[path] = make_pdf("Thematic Review of Adolescent Suicide", "Revised edition with an addendum.")
    third = fetch([site.base + MAIN], dest, opts())
    name = "thematic-review-of-adolescent-suicide-final-dec-2020.pdf"
    assert [f.file for f in third.updated] == [name] and third.new == []
    assert (dest / name).read_bytes() == site.files[path]
    entry = next(e for e in json.loads((dest / "manifest.json").read_text())["documents"] if e["file"] == name)
    assert entry["sha256"] == hashlib.sha256(site.files[path]).hexdigest()
    assert [p.name for p in dest.iterdir() if p.name.startswith(".")] == [".corpus.lock"]


def test_hand_corrected_manifest_fields_are_kept(site: Site, tmp_path: Path) -> None:
    dest, _ = first_run(site, tmp_path)
    mpath = dest / "manifest.json"
    data = json.loads(mpath.read_text())
    for e in data["documents"]:
        if e["file"] == "child-b-final-report-jan-2021.pdf":
            e["type"] = "SCR"
            e["themes"] = ["neglect"]
    data["documents"].append({"file": "notes/extra.pdf", "title": "Added by hand", "type": "other"})
    mpath.write_text(json.dumps(data))
    fetch([site.base + MAIN], dest, opts())
    entries = {e["file"]: e for e in json.loads(mpath.read_text())["documents"]}
    assert entries["child-b-final-report-jan-2021.pdf"]["type"] == "SCR"
    assert entries["child-b-final-report-jan-2021.pdf"]["themes"] == ["neglect"]
    assert entries["notes/extra.pdf"]["title"] == "Added by hand"


def test_unreachable_start_page_is_a_clear_error_and_changes_nothing(site: Site, tmp_path: Path) -> None:
    port = closed_port()
    dest, _ = first_run(site, tmp_path)
    before = snapshot(dest)
    with pytest.raises(FetchError, match=rf"cannot reach 127\.0\.0\.1:{port}: .* \(no network\?\)"):
        fetch([f"http://127.0.0.1:{port}/"], dest, opts(retries=1))
    assert snapshot(dest) == before

    fresh = tmp_path / "fresh"
    with pytest.raises(FetchError, match="cannot reach"):
        fetch([f"http://127.0.0.1:{port}/reviews/"], fresh, opts(retries=0))
    assert not fresh.exists()


def test_cli_fetch_then_ingest(site: Site, tmp_path: Path, hashing_encoder) -> None:
    from sscp_rag.index import load_index
    from sscp_rag.ingest import build_index

    dest = tmp_path / "sscp"
    runner = CliRunner()
    args = ["fetch", "--url", site.base + MAIN, "--dest", str(dest), "--delay", "0", "--max-mb", str(CAP / 2**20)]
    res = runner.invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["new"]) == 13 and len(out["failed"]) == 4 and out["ok"] is True
    assert {f["reason"] for f in out["failed"]} >= {"HTTP 404 Not Found"}

    res = runner.invoke(cli, args + ["--quiet"])
    assert res.exit_code == 0, res.output
    assert "0 new, 0 updated, 13 unchanged, 4 failed, 2 skipped by robots.txt" in res.output

    # one start page that fails: the rest is fetched, the exit status says so
    res = runner.invoke(cli, [*args, "--quiet", "--url", site.base + "/no-such-page/"])
    assert res.exit_code == 1
    assert f"start page failed: {site.base}/no-such-page/: HTTP 404 Not Found" in res.output

    # ingest picks the fetched files up, with the manifest's metadata
    settings = Settings(corpus_dir=dest, index_dir=tmp_path / "index", encoder="hashing")  # not about the model
    summary = build_index(settings, progress=False, embedder=hashing_encoder)
    assert summary.documents == 13 and summary.skipped == []
    index = load_index(settings, embedder=hashing_encoder)
    metas = {d.meta.file: d.meta for d in index.docs.values()}
    assert metas["dhr-doris-executive-summary.pdf"].type == "DHR"
    assert metas["sudi-infographic-dec-2020.pdf"].type == "infographic"
    assert not any(m.inferred for m in metas.values())


def test_cli_without_network_says_so_and_exits_1(tmp_path: Path) -> None:
    port = closed_port()
    dest = tmp_path / "sscp"
    exe = Path(sys.executable).with_name("sscp-rag")
    proc = subprocess.run(
        [str(exe), "fetch", "--url", f"http://127.0.0.1:{port}/", "--dest", str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: cannot reach 127.0.0.1:{port}:") and "(no network?)" in proc.stderr
    assert "Traceback" not in proc.stderr and not dest.exists()


def test_invalid_manifest_is_refused_before_anything_changes(site: Site, tmp_path: Path) -> None:
    dest = tmp_path / "sscp"
    dest.mkdir()
    (dest / "manifest.json").write_text("{not json")
    with pytest.raises(FetchError, match="not a valid manifest"):
        fetch([site.base + MAIN], dest, opts())
    assert snapshot(dest) == {"manifest.json": b"{not json"}
    assert site.requests() == []


def test_rate_limit_and_backoff_wait_between_requests(site: Site, tmp_path: Path) -> None:
    waits: list[float] = []
    fetch([site.base + BRIEFINGS], tmp_path / "d", opts(delay=1000.0), sleep=waits.append)
    n = len(site.requests())  # robots, 2 pages, 4 PDFs: every request after the first waited
    assert n == 7 and len(waits) == n - 1
    assert all(900 < w <= 1000 for w in waits)

    waits.clear()
    site.flaky_left = 2
    dest = tmp_path / "e"
    summary = fetch([site.base + MAIN], dest, opts(backoff=3.0, retries=2), sleep=waits.append)
    assert "sudi-infographic-dec-2020.pdf" in {f.file for f in summary.new}
    assert [w for w in waits if w > 0] == [3.0, 6.0]  # the 503s, retried after 3 s then 6 s


def test_timeout_is_a_reason_not_a_hang(site: Site, tmp_path: Path) -> None:
    summary = fetch([site.base + "/slow/"], tmp_path / "d", opts(timeout=0.3, retries=0))
    assert [f.title for f in summary.failed] == ["SCR Slow"]
    assert summary.failed[0].reason == f"no answer from {site.base[7:]}: timed out (ReadTimeout)"


# --------------------------------------------------------------------------------------------
# pure functions


@pytest.mark.parametrize(
    ("title", "rtype"),
    [
        ("Thematic Review of Adolescent Suicide FINAL Dec 2020", "thematic"),
        ("Child B Final report Jan 2021", "LCSPR"),
        ("Child Death Review Partnership SUDI thematic review", "SUDI"),
        ("SUDI Infographic Dec 2020", "infographic"),
        ("SCR Family M", "SCR"),
        ("DHR Doris Executive Summary", "DHR"),
        ("SSCP Thematic Review of Surrey SCRs and Case Reviews", "thematic"),
        ("Thematic Review 2019", "thematic"),
        ("SCR Executive Summary in relation to three children HH, II & JJ", "SCR"),
        ("SCR Child G", "SCR"),
        ("SCR Baby LL", "SCR"),
        ("SCR Child A : Executive Summary", "SCR"),
        ("SCR Child D", "SCR"),
        ("Report on good practice in SSCP Partnership Reviews", "good-practice"),
        ("7 Minute Briefing: Neglect", "7-minute briefing"),
        ("Seven minute briefing - Exploitation", "7-minute briefing"),
        ("Child R practice review", "LCSPR"),
        ("Annual report 2020", "other"),
    ],
)
def test_review_type_from_guide_titles(title: str, rtype: str) -> None:
    assert infer_review_type(title) == rtype


def test_review_type_falls_back_to_the_file_name() -> None:
    assert infer_review_type("Download", "https://x/uploads/7MB-Neglect.pdf") == "7-minute briefing"
    assert infer_review_type("Child K", "https://x/uploads/child-k-2014.pdf") == "SCR"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://x/wp-content/uploads/2021/01/Child-B-Final-report-Jan-2021.pdf", "child-b-final-report-jan-2021.pdf"),
        ("https://x/a/SCR%20Child%20G%20(final).PDF", "scr-child-g-final.pdf"),
        ("https://x/a/.hidden.pdf", "hidden.pdf"),
        ("https://x/a/r%C3%A9sum%C3%A9..v2.pdf", "resume..v2.pdf"),
        ("https://x/a/", "document.pdf"),
    ],
)
def test_safe_file_name(url: str, name: str) -> None:
    assert safe_file_name(url) == name


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://x/files/..%2F..%2Fevil.pdf", "evil.pdf"),
        ("https://x/files/..%5C..%5Cevil.pdf", "evil.pdf"),
        ("https://x/a/%2E%2E", "document.pdf"),
        ("https://x/a/evil%00.pdf", "evil.pdf"),
        ("https://x/a/%2F%2F%2F", "document.pdf"),
    ],
)
def test_safe_file_name_keeps_only_the_last_part_of_a_smuggled_path(url: str, name: str) -> None:
    assert safe_file_name(url) == name


def test_extract_links_scopes_content_and_resolves_urls() -> None:
    html = """<html><head><base href="/docs/"></head><body><nav><a href="menu.pdf">Menu</a></nav>
    <main><a href="a.pdf#p=2"> SCR  Child G </a><a href="mailto:x@y">mail</a><a href="javascript:x()">js</a>
    <a href="//cdn.example.org/b.pdf"><img alt="Infographic"></a></main></body></html>"""
    content, everything = extract_links(html, "https://site.example/page/")
    assert [(link.url, link.text) for link in content] == [
        ("https://site.example/docs/a.pdf", "SCR Child G"),
        ("https://cdn.example.org/b.pdf", "Infographic"),
    ]
    assert "https://site.example/docs/menu.pdf" in [link.url for link in everything]


def test_hostile_redirects_are_refused_with_reasons(site: Site, tmp_path: Path) -> None:
    summary = fetch([site.base + "/redirects/"], tmp_path / "d", opts())
    reasons = {f.title: f.reason for f in summary.failed}
    assert reasons == {
        "SCR Loop": "more than 5 redirects",
        "SCR Ftp": "redirect to a non-http(s) URL 'ftp://127.0.0.1/x.pdf'; refused",
    }
    # a redirect into a path robots.txt disallows is not followed
    assert summary.robots_skipped == [site.base + "/to-private.pdf"]
    assert not any(r["path"].startswith("/private/") for r in site.requests())
    assert summary.new == [] and not (tmp_path / "d" / "manifest.json").exists()


def _start_and_wait_for_download(cmd: list[str], dest: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60  # a wait for the download to start, not a speed assertion
    while not list(dest.glob(".fetch-*.part")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not list(dest.glob(".fetch-*.part")):
        proc.kill()
        pytest.fail(f"the download never started: {proc.communicate()}")
    return proc


def test_interrupted_download_leaves_no_pdf_and_the_next_run_completes(site: Site, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    exe = Path(sys.executable).with_name("sscp-rag")
    cmd = [str(exe), "fetch", "--url", site.base + "/trickle/", "--dest", str(dest), "--delay", "0", "--quiet"]

    # Ctrl-C: the temporary file is removed, the exit status says so
    proc = _start_and_wait_for_download(cmd, dest)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.startswith("Interrupted; no half-written file")
    assert sorted(p.name for p in dest.iterdir()) == [".corpus.lock"]

    # killed outright: at worst a hidden temporary file, never the PDF or a manifest entry
    proc = _start_and_wait_for_download(cmd, dest)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (dest / "trickle.pdf").exists() and not (dest / "manifest.json").exists()

    site.trickle_pause = False
    summary = fetch([site.base + "/trickle/"], dest, opts())
    assert [f.file for f in summary.new] == ["trickle.pdf"]
    assert (dest / "trickle.pdf").read_bytes() == site.files["/scr-child-d.pdf"]
    assert sorted(p.name for p in dest.iterdir()) == [".corpus.lock", "manifest.json", "trickle.pdf"]


class ToLocalSite(httpx.BaseTransport):
    """Sends every request to the local test server, keeping path and query: the real SSCP site
    cannot be reached from here, so this stands in for DNS. The HTTP underneath is real."""

    def __init__(self, base: str):
        self.base = httpx.URL(base)
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        local = request.url.copy_with(scheme=self.base.scheme, host=self.base.host, port=self.base.port)
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"host"]
        return self.inner.handle_request(httpx.Request(request.method, local, headers=headers))

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("linked", [True, False])
def test_default_urls_find_the_briefings_page(site: Site, tmp_path: Path, linked: bool) -> None:
    site.briefings_link = linked
    with httpx.Client(transport=ToLocalSite(site.base)) as client:
        summary = fetch(None, tmp_path / "d", opts(), client=client)
    assert summary.start_pages == [DEFAULT_START_URL]
    assert summary.pages_read[0] == DEFAULT_START_URL
    # linked: found from the start page's "7 Minute Briefings" link; not linked: the known address
    assert summary.pages_read[1] == ("https://www.surreyscp.org.uk" + BRIEFINGS if linked else DEFAULT_BRIEFINGS_URL)
    by_file = {f.file: f for f in summary.new}
    assert by_file["7mb-safer-sleep.pdf"].source_url == (
        "https://www.surreyscp.org.uk/wp-content/uploads/2021/03/7MB-Safer-Sleep.pdf"
    )
    assert len(summary.new) == 12 and "scr-child-d.pdf" in by_file  # no user file here to avoid
    # the one link to another host (the test server's own address) is refused without a request
    thematic = next(f for f in summary.failed if f.title.startswith("Thematic Review of Adolescent"))
    assert thematic.reason == (
        "link to 127.0.0.1, which is not an allowed host; refused (--allow-host 127.0.0.1 allows it)"
    )


# --------------------------------------------------------------------------------------------
# hardening: hostile servers (decompression bombs, drips, SSRF, hidden links, revalidation)

Route = Callable[[BaseHTTPRequestHandler], None]


class RouteHandler(BaseHTTPRequestHandler):
    """Serves ``routes`` (path -> function of the handler) and logs every request's headers."""

    routes: dict[str, Route]
    log: list[dict]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.log.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        self.routes.get(self.path, lambda h: reply(h, 404, b"<h1>Not found</h1>"))(self)


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", ctype: str = "text/html", **headers: str) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for k, v in headers.items():
        h.send_header(k.replace("_", "-"), v)
    h.end_headers()
    with contextlib.suppress(OSError):
        h.wfile.write(body)


def page(html: str) -> Route:
    return lambda h: reply(h, 200, f"<html><body><main>{html}</main></body></html>".encode())


def pdf(body: bytes, **headers: str) -> Route:
    return lambda h: reply(h, 200, body, "application/pdf", **headers)


def redirect(location: str) -> Route:
    return lambda h: reply(h, 302, b"", Location=location)


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[str, list[dict]]]]:
    """Starts servers on 127.0.0.1 (or another loopback address): serve(routes) -> (base URL, log)."""
    servers = []

    def start(routes: dict[str, Route], host: str = "127.0.0.1") -> tuple[str, list[dict]]:
        log: list[dict] = []
        server = ThreadingHTTPServer((host, 0), type("H", (RouteHandler,), {"routes": routes, "log": log}))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://{host}:{server.server_address[1]}", log

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def gzip_bomb(prefix: bytes, mb: int) -> bytes:
    """``prefix`` and ``mb`` MB of zeros, gzip-compressed: about 1 KB on the wire per MB decoded."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join([z.compress(prefix), *(z.compress(zeros) for _ in range(mb)), z.flush()])


def test_decompression_bombs_are_capped_on_decoded_bytes_with_bounded_memory(serve, tmp_path: Path) -> None:
    pdf_bomb = gzip_bomb(b"%PDF-1.4\n", 128)  # 128 MB decoded
    page_bomb = gzip_bomb(b"<html><body><main>", 128)
    assert len(pdf_bomb) < 200_000 and len(page_bomb) < 200_000

    def gz(body: bytes, ctype: str) -> Route:
        return lambda h: reply(h, 200, body, ctype, Content_Encoding="gzip")

    base, log = serve(
        {
            "/": page(
                '<a href="/bomb.pdf">SCR Bomb</a> <a href="/zstd.pdf">SCR Zstd</a> '
                '<a href="/reviews/bomb/">Reviews</a> <a href="/ok.pdf">SCR Ok</a>'
            ),
            "/bomb.pdf": gz(pdf_bomb, "application/pdf"),
            "/zstd.pdf": lambda h: reply(
                h, 200, b"\x28\xb5\x2f\xfd" + bytes(64), "application/pdf", Content_Encoding="zstd"
            ),
            "/reviews/bomb/": gz(page_bomb, "text/html"),
            "/ok.pdf": gz(gzip.compress(make_pdf("SCR Ok", "A small report sent gzip-compressed.")), "application/pdf"),
        }
    )
    tracemalloc.start()
    try:  # with the default cap of 50 MB: the bombs are small on the wire, far larger decoded
        summary = fetch([base + "/"], tmp_path / "d", opts(max_bytes=50 * 2**20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    reasons = {f.title: f.reason for f in summary.failed}
    assert reasons == {
        "SCR Bomb": "larger than the cap of 50.0 MB once decompressed; download stopped",
        "SCR Zstd": "sent with Content-Encoding zstd, which was not asked for",
    }
    assert summary.page_failures == [
        Failure(
            base + "/reviews/bomb/",
            "Reviews",
            "the page is larger than the cap of 5.0 MB once decompressed; download stopped",
        )
    ]
    assert [f.file for f in summary.new] == ["ok.pdf"]  # gzip itself is fine, decoded
    assert (tmp_path / "d" / "ok.pdf").read_bytes().startswith(b"%PDF-")
    assert {r["accept-encoding"] for r in log} == {"identity, gzip"}
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MB"  # 128 MB bombs, decoded in bounded steps

    # robots.txt, read before anything else on a host, is capped the same way
    base2, _ = serve({"/robots.txt": gz(gzip_bomb(b"User-agent: *\n", 64), "text/plain"), "/": page("")})
    with pytest.raises(FetchError, match="robots.txt is larger than the cap of 512 KB once decompressed"):
        fetch([base2 + "/"], tmp_path / "e", opts())


def drip(head: bytes, each: bytes, seconds: int = 25) -> Route:
    """Sends ``head`` at once, then ``each`` once a second for ``seconds``: never idle long enough
    for a read timeout."""

    def route(h: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            h.wfile.write(head)
            for _ in range(seconds):
                h.wfile.write(each)
                time.sleep(1)

    return route


def test_a_dripping_server_is_cut_off_at_the_total_deadline(serve, tmp_path: Path) -> None:
    pdf_head = b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\n"
    base, _ = serve(
        {
            "/": page(
                '<a href="/body.pdf">SCR Body</a> <a href="/headers.pdf">SCR Headers</a> '
                '<a href="/reviews/slow/">Reviews</a>'
            ),
            "/body.pdf": drip(pdf_head, b"0"),  # the body a byte a second
            "/headers.pdf": drip(b"HTTP/1.1 200 OK\r\n", b"X-Drip: 1\r\n"),  # the headers a line a second
            "/reviews/slow/": drip(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<main>", b"<p>"),
        }
    )
    t0 = time.monotonic()
    summary = fetch([base + "/"], tmp_path / "d", opts(timeout=2.0, deadline=3.0, retries=2))
    elapsed = time.monotonic() - t0
    reason = "took longer than 3 s, the limit for one request; stopped"
    assert {f.title: f.reason for f in summary.failed} == {"SCR Body": reason, "SCR Headers": reason}
    assert summary.page_failures == [Failure(base + "/reviews/slow/", "Reviews", reason)]
    # three requests of 3 s each, not retried; each server would drip for 25 s
    assert elapsed < 20, elapsed
    assert not list((tmp_path / "d").glob("*.pdf"))


def test_address_policy_refuses_non_public_addresses_unless_a_start_page_is_on_one() -> None:
    policy = AddressPolicy()
    assert policy.problem("127.0.0.1") == "a loopback address 127.0.0.1"
    assert policy.problem("::1") == "a loopback address ::1"
    assert policy.problem("::ffff:127.0.0.1") == "a loopback address 127.0.0.1"
    assert policy.problem("169.254.169.254") == "a link-local address 169.254.169.254"
    assert policy.problem("fe80::1") == "a link-local address fe80::1"
    assert policy.problem("10.1.2.3") == "a private address 10.1.2.3"
    assert policy.problem("192.168.0.10") == "a private address 192.168.0.10"
    assert policy.problem("fd00::1") == "a private address fd00::1"
    assert policy.problem("0.0.0.0") == "an unspecified address 0.0.0.0"
    assert policy.problem("100.64.0.1") == "a non-public address 100.64.0.1"
    assert policy.problem("93.184.216.34") is None and policy.problem("2606:4700::1111") is None

    def fake(host: str, port: int) -> list[str]:
        return {"reviews.example": ["93.184.216.34"], "intranet.example": ["10.0.0.5"]}[host]

    # a public start page permits nothing more; one on the intranet or 127.0.0.1 permits its own address only
    assert AddressPolicy.for_start_pages(["https://reviews.example/"], fake).permitted == frozenset()
    intranet = AddressPolicy.for_start_pages(["https://intranet.example/x"], fake)
    assert intranet.problem("10.0.0.5") is None and intranet.problem("10.0.0.6") == "a private address 10.0.0.6"
    local = AddressPolicy.for_start_pages(["http://127.0.0.1:8080/"])
    assert local.problem("127.0.0.1") is None and local.problem("169.254.169.254")


def test_connections_are_checked_after_dns_at_connect_time(serve, tmp_path: Path) -> None:
    secret_base, secret_log = serve({"/latest/credentials.pdf": pdf(make_pdf("Secret", "Not for you."))})
    secret_port = secret_base.rsplit(":", 1)[1]
    start_base, start_log = serve(
        {
            "/": page(
                f'<a href="http://internal.example:{secret_port}/latest/credentials.pdf">SCR Internal</a>'
                ' <a href="/own.pdf">SCR Own</a>'
            ),
            "/own.pdf": pdf(make_pdf("SCR Own", "The start page's own report.")),
        },
        host="127.0.0.2",
    )
    start_port = start_base.rsplit(":", 1)[1]
    start = f"http://reviews.example:{start_port}/"
    answers = {"reviews.example": ["127.0.0.2"], "internal.example": ["127.0.0.1"]}

    def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    # the start page is on 127.0.0.2, so 127.0.0.2 is permitted, but not 127.0.0.1, even for an allowed host
    client = make_client(AddressPolicy.for_start_pages([start], resolve), timeout=10)
    with client:
        summary = fetch([start], tmp_path / "d", opts(allow_hosts=("internal.example",)), client=client)
    assert [f.file for f in summary.new] == ["own.pdf"]
    assert [f.reason for f in summary.failed] == [
        "internal.example resolves to a loopback address 127.0.0.1; refused "
        "(only a start page's own address may be loopback, private or link-local)"
    ]
    assert secret_log == []

    # DNS rebinding: the start host was public when the run began, loopback when connected to
    answers["reviews.example"] = ["93.184.216.34"]
    policy = AddressPolicy.for_start_pages([start], resolve)
    answers["reviews.example"] = ["127.0.0.2"]
    n = len(start_log)
    with make_client(policy, timeout=10) as client, pytest.raises(FetchError, match="resolves to a loopback"):
        fetch([start], tmp_path / "e", opts(), client=client)
    assert len(start_log) == n  # not a single request reached the server


def test_links_and_redirects_stay_on_allowed_hosts_and_bodies_are_never_quoted(serve, tmp_path: Path) -> None:
    report = make_pdf("SCR Elsewhere", "Served from the other host name.")
    routes: dict[str, Route] = {}
    base, log = serve(routes)
    port = base.rsplit(":", 1)[1]
    start = f"http://localhost:{port}/"  # the start page's host is "localhost" ...
    other = f"http://127.0.0.1:{port}"  # ... and this one another host (the same server, as it happens)
    secret = b"AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG"
    routes.update(
        {
            "/": page(
                f'<a href="{other}/direct.pdf">SCR Direct</a> <a href="/away.pdf">SCR Away</a> '
                '<a href="/meta.pdf">SCR Meta</a>'
            ),
            "/direct.pdf": pdf(report),
            "/away.pdf": redirect(f"{other}/target.pdf"),
            "/target.pdf": pdf(report),
            "/meta.pdf": redirect("/latest/meta-data/iam/security-credentials/role"),
            "/latest/meta-data/iam/security-credentials/role": lambda h: reply(h, 200, secret, "application/pdf"),
        }
    )
    summary = fetch([start], tmp_path / "d", opts())
    reasons = {f.title: f.reason for f in summary.failed}
    refused = "which is not an allowed host; refused (--allow-host 127.0.0.1 allows it)"
    assert reasons == {
        "SCR Direct": f"link to 127.0.0.1, {refused}",
        "SCR Away": f"redirect to 127.0.0.1, {refused}",
        "SCR Meta": "not a PDF (no %PDF- header in its first bytes; Content-Type application/pdf)",
    }
    text = "\n".join(summary_lines(summary)) + json.dumps(summary.as_dict())
    assert "AKIA" not in text and "wJalr" not in text
    paths = [r["path"] for r in log]
    assert "/direct.pdf" not in paths and "/target.pdf" not in paths

    # once allowed (a start page on loopback may reach loopback), both are fetched
    summary = fetch([start], tmp_path / "d", opts(allow_hosts=(f"127.0.0.1:{port}",)))
    assert sorted(f.file for f in summary.new) == ["away.pdf", "direct.pdf"]


# A partnership page whose six reports are linked in the ways published pages link them.
REPORTS = {
    # path: (link text, title in the PDF, headers)
    "/wp-content/uploads/2022/03/LCSPR-Child-E.pdf": ("LCSPR Child E (March 2022)", "Child E", {}),
    "/wp-content/uploads/2022/05/Thematic-Review-Neglect.pdf": ("Thematic review: neglect", "Neglect", {}),
    "/wp-content/uploads/2021/11/7MB-Exploitation.pdf": ("7 Minute Briefing: Exploitation", "Exploitation", {}),
    "/wp-content/uploads/2023/01/LCSPR-Child-F-Final.pdf": ("", "Child F", {"ETag": '"child-f-v1"'}),
    "/download/123": (
        "Download the DHR Grace overview report",
        "DHR Grace",
        {
            "Content-Disposition": 'attachment; filename="DHR-Grace-Overview-Report.pdf"',
            "Last-Modified": "Mon, 02 Jan 2023 09:00:00 GMT",
        },
    ),
    "/wp-content/uploads/2023/..%2F..%2FSCR-Child-H.pdf": ("SCR Child H", "Child H", {}),
    # behind a page one level down, and a download whose name tries to leave the folder
    "/download/999": ("", "Child J", {}),
    "/download/789": (
        "Download the SUDI summary",
        "SUDI",
        {"Content-Disposition": "attachment; filename=../../../outside.pdf"},
    ),
}

PARTNERSHIP_PAGE = """<header><nav><a href="/download/nav">Download our app</a></nav></header>
<h1>Learning from local reviews</h1>
<ul>
 <li><a href="/wp-content/uploads/2022/03/LCSPR-Child-E.pdf">LCSPR Child E (March 2022)</a></li>
 <li><a href="/wp-content/uploads/2022/05/Thematic-Review-Neglect.pdf">Thematic review: neglect</a></li>
 <li><a href="/wp-content/uploads/2021/11/7MB-Exploitation.pdf">7 Minute Briefing: Exploitation</a></li>
 <li><a href="/case-reviews/child-f-review">Child F review (2023)</a></li>
 <li><a href="/download/123">Download the DHR Grace overview report</a></li>
 <li><a href="/wp-content/uploads/2023/..%2F..%2FSCR-Child-H.pdf">SCR Child H</a></li>
 <li><a href="/case-reviews/child-j/">Child J review</a></li>
 <li><a href="/download/789">Download the SUDI summary</a></li>
 <li><a href="/download/456">Download the annual report</a> (a page, not a PDF)</li>
 <li><a href="/reports/huge">Full report (appendices)</a> (too large)</li>
 <li><a href="/reports/fake">Summary report</a> (HTML sent as a PDF)</li>
 <li><a href="/reports/form.docx">Referral form</a></li>
</ul>"""


def partnership_routes(reports: dict[str, bytes]) -> dict[str, Route]:
    def doc(path: str) -> Route:
        def route(h: BaseHTTPRequestHandler) -> None:
            headers = dict(REPORTS[path][2])
            if headers.get("ETag") and h.headers.get("If-None-Match") == headers["ETag"]:
                return reply(h, 304, b"", "application/pdf", **headers)
            lm = headers.get("Last-Modified")
            if lm and h.headers.get("If-Modified-Since") == lm:
                return reply(h, 304, b"", "application/pdf", **headers)
            ctype = "application/octet-stream" if path.startswith("/download/") else "application/pdf"
            return reply(h, 200, reports[path], ctype, **{k.replace("-", "_"): v for k, v in headers.items()})

        return route

    return {
        "/": page(PARTNERSHIP_PAGE),
        **{path: doc(path) for path in reports},
        "/case-reviews/child-f-review": redirect("/wp-content/uploads/2023/01/LCSPR-Child-F-Final.pdf"),
        "/case-reviews/child-j/": page('<h1>Child J review</h1><p><a href="/download/999">Download</a></p>'),
        "/download/456": page("<h1>Annual report</h1><p>Coming soon.</p>"),
        "/reports/huge": pdf(b"%PDF-1.4\n" + bytes(2 * CAP)),
        "/reports/fake": lambda h: reply(h, 200, b"<html>" + b"x" * 2000, "application/pdf"),
        "/reports/form.docx": lambda h: reply(h, 200, b"PK\x03\x04", "application/msword"),
    }


@pytest.fixture(scope="module")
def reports() -> dict[str, bytes]:
    return {path: make_pdf(f"Review of {title}", f"The report on {title}.") for path, (_, title, _) in REPORTS.items()}


def test_reports_behind_redirects_download_paths_and_odd_names_are_found(serve, reports, tmp_path: Path) -> None:
    base, log = serve(partnership_routes(reports))
    dest = tmp_path / "corpus" / "sscp"
    summary = fetch([base + "/"], dest, opts())
    saved = {
        "lcspr-child-e.pdf": "/wp-content/uploads/2022/03/LCSPR-Child-E.pdf",
        "thematic-review-neglect.pdf": "/wp-content/uploads/2022/05/Thematic-Review-Neglect.pdf",
        "7mb-exploitation.pdf": "/wp-content/uploads/2021/11/7MB-Exploitation.pdf",
        "lcspr-child-f-final.pdf": "/wp-content/uploads/2023/01/LCSPR-Child-F-Final.pdf",  # via a redirect
        "dhr-grace-overview-report.pdf": "/download/123",  # named by Content-Disposition
        "scr-child-h.pdf": "/wp-content/uploads/2023/..%2F..%2FSCR-Child-H.pdf",  # the name's last part
        "child-j-review.pdf": "/download/999",  # one level down, named after the link that led there
        "outside.pdf": "/download/789",  # Content-Disposition ../../../outside.pdf: inside dest all the same
    }
    assert sorted(f.file for f in summary.new) == sorted(saved)
    for name, path in saved.items():
        assert (dest / name).read_bytes() == reports[path], name
    # nothing outside dest
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        f"corpus/sscp/{n}" for n in [*saved, "manifest.json", ".corpus.lock"]
    )
    entries = {e["file"]: e for e in json.loads((dest / "manifest.json").read_text())["documents"]}
    child_f = entries["lcspr-child-f-final.pdf"]
    assert child_f["source_url"] == base + "/case-reviews/child-f-review"  # the link, as for any redirect
    assert child_f["title"] == "Child F review (2023)" and child_f["type"] == "LCSPR" and child_f["year"] == 2023
    assert entries["dhr-grace-overview-report.pdf"]["type"] == "DHR"
    assert entries["child-j-review.pdf"]["linked_from"] == base + "/case-reviews/child-j/"

    # every other refusal stays: too large, HTML sent as a PDF; a page and an office file are not PDFs
    reasons = {f.url.removeprefix(base): f.reason for f in summary.failed + summary.page_failures}
    assert reasons == {
        "/reports/huge": f"too large (128 KB > cap {CAP // 1024} KB)",
        "/reports/fake": "neither an HTML page nor a PDF (Content-Type application/pdf)",
    }
    assert base + "/download/456" in summary.pages_read
    paths = [r["path"] for r in log]
    assert "/reports/form.docx" not in paths and "/download/nav" not in paths  # not probed: a .docx, a menu


def test_second_run_revalidates_every_known_file_conditionally(serve, reports, tmp_path: Path) -> None:
    base, log = serve(partnership_routes(reports))
    dest = tmp_path / "d"
    first = fetch([base + "/"], dest, opts())
    assert len(first.new) == 8

    def files() -> dict[str, tuple[bytes, int, int]]:  # bytes, modification time, inode (not the lock file)
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in dest.glob("[!.]*")}

    before = files()
    mark = len(log)

    second = fetch([base + "/"], dest, opts())
    assert second.new == [] and second.updated == [] and len(second.unchanged) == 8
    assert files() == before  # nothing rewritten, the manifest included

    # every request for a known file (redirect hops included) carried a conditional header
    known = {*REPORTS, "/case-reviews/child-f-review"}
    requests = [r for r in log[mark:] if r["path"] in known]
    assert {r["path"] for r in requests} == known
    unconditional = [r["path"] for r in requests if not (r.get("if-none-match") or r.get("if-modified-since"))]
    assert unconditional == []
    by_path = {r["path"]: r for r in requests}
    assert by_path["/wp-content/uploads/2023/01/LCSPR-Child-F-Final.pdf"]["if-none-match"] == '"child-f-v1"'
    assert by_path["/download/123"]["if-modified-since"] == "Mon, 02 Jan 2023 09:00:00 GMT"
    # a server that gives no validator gets the time the file was fetched, as an HTTP date
    assert by_path["/download/999"]["if-modified-since"].endswith(" GMT")


def test_the_number_of_pdfs_a_run_is_capped(serve, tmp_path: Path) -> None:
    links = " ".join(f'<a href="/r{i}.pdf">SCR Child {chr(65 + i)}</a>' for i in range(5))
    base, log = serve({"/": page(links), **{f"/r{i}.pdf": pdf(make_pdf(f"Child {i}", "A report.")) for i in range(5)}})
    summary = fetch([base + "/"], tmp_path / "d", opts(max_files=3))
    assert [f.file for f in summary.new] == ["r0.pdf", "r1.pdf", "r2.pdf"]
    assert summary.files_not_fetched == 2 and summary.as_dict()["files_not_fetched"] == 2
    assert "  cap of 3 PDFs a run reached: 2 more PDF link(s) not fetched (raise it with --max-files)" in (
        summary_lines(summary)
    )
    assert not any(r["path"] in ("/r3.pdf", "/r4.pdf") for r in log)


def test_cli_fetch_allow_host_max_files_and_deadline(serve, tmp_path: Path, monkeypatch) -> None:
    routes: dict[str, Route] = {}
    base, _ = serve(routes)
    port = base.rsplit(":", 1)[1]
    links = " ".join(f'<a href="http://127.0.0.1:{port}/r{i}.pdf">SCR Child {i}</a>' for i in range(3))
    routes.update({"/": page(links), **{f"/r{i}.pdf": pdf(make_pdf(f"Child {i}", "A report.")) for i in range(3)}})
    args = ["fetch", "--url", f"http://localhost:{port}/", "--delay", "0", "--json"]
    runner = CliRunner()

    res = runner.invoke(cli, [*args, "--dest", str(tmp_path / "a")])
    out = json.loads(res.output)
    assert res.exit_code == 0 and out["new"] == [] and len(out["failed"]) == 3
    assert "--allow-host 127.0.0.1 allows it" in out["failed"][0]["reason"]

    res = runner.invoke(cli, [*args, "--dest", str(tmp_path / "b"), "--allow-host", "127.0.0.1", "--max-files", "2"])
    out = json.loads(res.output)
    assert res.exit_code == 0 and len(out["new"]) == 2 and out["files_not_fetched"] == 1

    # the same from the environment (settings fetch_allow_hosts, fetch_max_files, fetch_deadline)
    monkeypatch.setenv("SSCP_RAG_FETCH_ALLOW_HOSTS", "example.org, 127.0.0.1")
    monkeypatch.setenv("SSCP_RAG_FETCH_MAX_FILES", "1")
    monkeypatch.setenv("SSCP_RAG_FETCH_DEADLINE", "30")
    res = runner.invoke(cli, [*args, "--dest", str(tmp_path / "c")])
    out = json.loads(res.output)
    assert res.exit_code == 0 and len(out["new"]) == 1 and out["files_not_fetched"] == 2
    res = runner.invoke(cli, [*args, "--dest", str(tmp_path / "c"), "--quiet", "--deadline", "0"])
    assert res.exit_code == 2 and "--deadline" in res.output


@pytest.mark.parametrize("chunk", [1, 2, 7, 4096, 1 << 20])
def test_gzip_is_decoded_in_bounded_steps_member_by_member(chunk: int) -> None:
    from sscp_rag.http import _gunzip

    def pieces(data: bytes) -> list[bytes]:
        return [data[i : i + chunk] for i in range(0, len(data), chunk)]

    one, two = gzip.compress(b"first " * 1000), gzip.compress(b"second " * 1000)
    assert b"".join(_gunzip(pieces(one + two))) == b"first " * 1000 + b"second " * 1000
    assert b"".join(_gunzip(pieces(one + b"\0\0 trailing junk" + two))) == b"first " * 1000  # as browsers do
    assert max(len(b) for b in _gunzip(pieces(gzip.compress(bytes(8 << 20))))) <= 64 * 1024
    with pytest.raises(zlib.error):
        b"".join(_gunzip(pieces(one[:-12])))  # cut short
