"""Screenshots of the app's four tabs for the README, taken in Debian's headless Chromium.

    python scripts/screenshots.py [--index DIR] [--corpus DIR] [--out docs/screenshots]

Starts the app on 127.0.0.1 against the index (default: index/, or SSCP_RAG_INDEX_DIR), asks a
question, searches, opens Across reviews and the library, and saves ask.png, search.png,
across.png and library.png. It prints
how long the server took to become healthy and the first answer to appear.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from sscp_rag.appserver import running_app

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
QUESTION = "What did reviews say about neglect?"
SEARCH = "co-sleeping on a sofa"


def chromium(user_data_dir: Path, width: int = 1400, height: int = 1900) -> webdriver.Chrome:
    """Debian's headless Chromium driven by Debian's chromedriver (no downloads)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}",
        "--hide-scrollbars",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def open_tab(driver: webdriver.Chrome, name: str) -> None:
    for tab in driver.find_elements(By.CSS_SELECTOR, '[role="tab"]'):
        if tab.text.strip() == name:
            tab.click()
            time.sleep(0.5)
            return
    raise RuntimeError(f"no tab {name!r}")


def wait_idle(driver: webdriver.Chrome, timeout: float = 120) -> None:
    """Until the app has finished its script run (no running indicator, no spinner)."""
    time.sleep(0.5)
    WebDriverWait(driver, timeout).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"] button, .stSpinner')
    )
    time.sleep(0.5)


def ask(driver: webdriver.Chrome, question: str, timeout: float = 180) -> str:
    """Type a question into the chat input and return the text of the answer when it is there."""
    box = WebDriverWait(driver, timeout).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="stChatInputTextArea"]'))
    )
    n_before = len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"]'))
    box.send_keys(question)
    box.send_keys(Keys.ENTER)

    def answered(d: webdriver.Chrome) -> str | bool:
        msgs = d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"]')
        if len(msgs) < n_before + 2:
            return False
        text = msgs[-1].text
        return text if ("\u201c" in text and "Sources" in text) or "do not appear" in text else False

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(answered)


def take(index_dir: Path, corpus_dir: Path | None, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    feedback = Path(tempfile.gettempdir()) / "sscp-rag-screenshots-feedback.jsonl"
    env = {"SSCP_RAG_INDEX_DIR": str(index_dir), "SSCP_RAG_FEEDBACK_PATH": str(feedback)}
    if corpus_dir:
        env["SSCP_RAG_CORPUS_DIR"] = str(corpus_dir)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as profile, running_app(env, log_path=Path(profile) / "app.log") as url:
        print(f"server healthy after {time.perf_counter() - t0:.1f} s")
        driver = chromium(Path(profile) / "chrome")
        t_browser = time.perf_counter()
        print(f"browser started {t_browser - t0:.1f} s after the server started")
        try:
            driver.get(url)
            WebDriverWait(driver, 300).until(
                ec.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="stChatInputTextArea"]'))
            )
            t_ready = time.perf_counter()
            print(
                f"page ready (model and index loaded) {t_ready - t_browser:.1f} s after the browser opened it "
                f"({t_ready - t0:.1f} s after the server started)"
            )
            ask(driver, QUESTION)
            t_answer = time.perf_counter()
            print(f"first answer shown {t_answer - t_ready:.1f} s after asking ({t_answer - t0:.1f} s after start)")
            expanders = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stExpander"] summary')
            if expanders:
                expanders[0].click()
            wait_idle(driver)
            driver.save_screenshot(str(out / "ask.png"))

            open_tab(driver, "Search")
            box = driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Search the reviews"]')
            box.send_keys(SEARCH)
            box.send_keys(Keys.ENTER)
            WebDriverWait(driver, 60).until(lambda d: "passages in" in d.page_source)
            wait_idle(driver)
            driver.save_screenshot(str(out / "search.png"))

            open_tab(driver, "Across reviews")
            WebDriverWait(driver, 120).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]')
            )
            driver.set_window_size(1400, 3300)  # the heatmap, the years chart and the register
            wait_idle(driver)
            driver.save_screenshot(str(out / "across.png"))
            driver.set_window_size(1400, 1900)

            open_tab(driver, "Library")
            wait_idle(driver)
            driver.save_screenshot(str(out / "library.png"))
        finally:
            driver.quit()
    for name in ("ask.png", "search.png", "across.png", "library.png"):
        shrink_png(out / name)
        print(out / name)


def shrink_png(path: Path) -> None:
    """Re-save a screenshot with a 256-colour palette: a third of the size, text still sharp."""
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    small.save(path, format="PNG", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path(os.environ.get("SSCP_RAG_INDEX_DIR", ROOT / "index")))
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    take(args.index.resolve(), args.corpus.resolve() if args.corpus else None, args.out)


if __name__ == "__main__":
    main()
