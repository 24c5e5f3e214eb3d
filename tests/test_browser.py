"""End to end in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver, asks the app (served by `streamlit run` on 127.0.0.1) a question and checks the
cited answer and its page image, then opens Across reviews: clicks a cell of the theme heatmap,
which opens its passages, and finds a row of the recommendations register."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from sscp_rag.appserver import running_app
from sscp_rag.index import Index
from sscp_rag.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.slow


def _chromium(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--window-size=1400,1800",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def test_browser_asks_and_gets_a_cited_answer_with_page_image(
    demo_index: Index, demo_settings: Settings, tmp_path: Path
) -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "the browser test needs Debian's Chromium and its driver: "
            "apt-get update && apt-get install -y chromium chromium-driver"
        )
    env = {
        "SSCP_RAG_INDEX_DIR": str(demo_settings.index_dir),
        "SSCP_RAG_CORPUS_DIR": str(demo_settings.corpus_dir),
        "SSCP_RAG_FEEDBACK_PATH": str(tmp_path / "feedback.jsonl"),
    }
    with running_app(env, log_path=tmp_path / "app.log") as url:
        assert url.startswith("http://127.0.0.1:")
        driver = _chromium(tmp_path / "chrome-profile")
        try:
            driver.get(url)
            box = WebDriverWait(driver, 180).until(
                ec.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="stChatInputTextArea"]'))
            )
            box.send_keys("What is the learning about co-sleeping on a sofa?")
            box.send_keys(Keys.ENTER)

            def answer_text(d: webdriver.Chrome) -> str | bool:
                msgs = d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"]')
                text = msgs[-1].text if len(msgs) >= 2 else ""
                return text if "Sources" in text and "\u201c" in text else False

            text = WebDriverWait(driver, 180, poll_frequency=0.3).until(answer_text)
            assert re.search(r"\u201c[^\u201d]{20,}\u201d \[1\]", text), text  # a quote with its marker
            assert re.search(r"\[1\] [^\n]+, pp?\. \d+", text), text  # its source, cited by page
            assert "SUDI" in text or "Safer Sleep" in text, text

            # the first source opens onto its PDF page image
            driver.find_elements(By.CSS_SELECTOR, '[data-testid="stExpander"] summary')[0].click()
            WebDriverWait(driver, 60).until(
                lambda d: any(
                    img.is_displayed() and d.execute_script("return arguments[0].naturalWidth", img) > 300
                    for img in d.find_elements(By.CSS_SELECTOR, '[data-testid="stExpander"] img')
                )
            )
            shot = tmp_path / "answer.png"
            assert driver.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            # nothing from the page escaped as an error
            assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')

            # Across reviews: the theme heatmap; clicking a cell opens its passages; a register row
            next(t for t in driver.find_elements(By.CSS_SELECTOR, '[role="tab"]') if t.text == "Across reviews").click()
            cell = WebDriverWait(driver, 120).until(
                lambda d: next(
                    (
                        m
                        for m in d.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"] path[aria-label]')
                        if "Report: SCR Child D;" in (m.get_attribute("aria-label") or "")
                        and "Theme: Neglect;" in m.get_attribute("aria-label")
                    ),
                    False,
                )
            )
            assert "Passages: " in cell.get_attribute("aria-label")
            ActionChains(driver).move_to_element(cell).click().perform()
            WebDriverWait(driver, 60).until(
                lambda d: "passages of SCR Child D on Neglect" in d.find_element(By.TAG_NAME, "body").text
            )
            WebDriverWait(driver, 60).until(
                lambda d: any(
                    "should" in (c.text or c.get_attribute("textContent") or "")
                    for c in d.find_elements(
                        By.CSS_SELECTOR, '[data-testid="stDataFrame"] td, [data-testid^="glide-cell"]'
                    )
                )
            )
            assert driver.save_screenshot(str(tmp_path / "across.png"))
            assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
        finally:
            driver.quit()
