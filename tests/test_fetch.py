"""sscp-rag fetch against a real HTTP server on 127.0.0.1 serving a site shaped like the SSCP
"Learning from Local Reviews" page (titles from the design guide), with real PDFs made by
reportlab and the hostile cases the issue lists."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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
    UnsafeNameError,
    extract_links,
    fetch,
    infer_review_type,
    safe_file_name,
    summary_lines,
)
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
    # served, but only behind hostile or excluded links: must never be saved
    "/files/..%2F..%2Fevil.pdf": ("Evil", "This file must never be written anywhere."),
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
 <li><a href="/files/..%2F..%2Fevil.pdf">SCR Child A : Executive Summary</a></li>
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

    # nothing outside dest: the tmp folder holds only dest, and the hostile file exists nowhere
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        f"corpus/sscp/{n}" for n in on_disk
    )
    assert not list(tmp_path.rglob("evil*"))

    # failures, each with its reason
    reasons = {f.title: f.reason for f in summary.failed}
    assert set(reasons) == {
        "Thematic Review 2019",
        "SCR Executive Summary in relation to three children HH, II & JJ",
        "SCR Baby LL",
        "Multi-agency audit 2018 (full data)",
        "SCR Child A : Executive Summary",
    }
    assert reasons["Thematic Review 2019"] == "HTTP 404 Not Found"
    assert reasons["SCR Executive Summary in relation to three children HH, II & JJ"].startswith("not a PDF")
    assert "cap" in reasons["SCR Baby LL"] and "stopped" in reasons["SCR Baby LL"]
    assert "too large" in reasons["Multi-agency audit 2018 (full data)"]
    assert "path traversal" in reasons["SCR Child A : Executive Summary"]
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

    # what the server saw: robots honoured, nav/footer links and hostile link never requested,
    # the 503 retried, the User-Agent names the tool and version
    log = site.requests()
    paths = [r["path"] for r in log]
    assert not any(p.startswith("/private/") for p in paths)
    assert "/privacy.pdf" not in paths and "/about/" not in paths and "/files/..%2F..%2Fevil.pdf" not in paths
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
    assert "12 new, 0 updated, 0 unchanged, 5 failed, 2 skipped by robots.txt" in text
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


def test_cli_fetch_then_ingest(site: Site, tmp_path: Path, embedder) -> None:
    from sscp_rag.index import build_index, load_index

    dest = tmp_path / "sscp"
    runner = CliRunner()
    args = ["fetch", "--url", site.base + MAIN, "--dest", str(dest), "--delay", "0", "--max-mb", str(CAP / 2**20)]
    res = runner.invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["new"]) == 12 and len(out["failed"]) == 5 and out["ok"] is True
    assert {f["reason"] for f in out["failed"]} >= {"HTTP 404 Not Found"}

    res = runner.invoke(cli, args + ["--quiet"])
    assert res.exit_code == 0, res.output
    assert "0 new, 0 updated, 12 unchanged, 5 failed, 2 skipped by robots.txt" in res.output

    # one start page that fails: the rest is fetched, the exit status says so
    res = runner.invoke(cli, [*args, "--quiet", "--url", site.base + "/no-such-page/"])
    assert res.exit_code == 1
    assert f"start page failed: {site.base}/no-such-page/: HTTP 404 Not Found" in res.output

    # ingest picks the fetched files up, with the manifest's metadata
    settings = Settings(corpus_dir=dest, index_dir=tmp_path / "index")
    summary = build_index(settings, progress=False, embedder=embedder)
    assert summary.documents == 12 and summary.skipped == []
    index = load_index(settings, embedder=embedder)
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
    "url",
    [
        "https://x/files/..%2F..%2Fevil.pdf",
        "https://x/files/..%5C..%5Cevil.pdf",
        "https://x/a/%2E%2E",
        "https://x/a/evil%00.pdf",
    ],
)
def test_safe_file_name_refuses_traversal(url: str) -> None:
    with pytest.raises(UnsafeNameError):
        safe_file_name(url)


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
