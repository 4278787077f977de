"""Opens embedrt's /docs page in headless Chromium (Debian's, driven by its chromedriver) and
checks what a reader sees: Swagger UI rendered the document, the embeddings operation is on the
page, and its screenshot shows it (the green of a POST operation and its path drawn, not a blank
or an error page).

Usage: docs_page.py URL SCREENSHOT.png

Prints `ok` when everything holds; leaves the page's screenshot at SCREENSHOT.png.
"""

import io
import sys
import tempfile

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

URL, SCREENSHOT = sys.argv[1:3]
# Swagger UI's colour of a POST operation's method badge.
POST_GREEN = (73, 204, 144)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
    f"--user-data-dir={tempfile.mkdtemp(prefix='embedrt-chromium-')}",
]:
    options.add_argument(flag)
browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    browser.get(URL + "/docs/")
    wait = WebDriverWait(browser, 30)
    # Swagger UI names each operation's block `operations-<tag>-<operationId>`.
    operation = wait.until(
        shown.visibility_of_element_located((By.ID, "operations-embeddings-createEmbedding"))
    )
    title = browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert title.startswith("embedrt"), title
    summary = operation.find_element(By.CSS_SELECTOR, ".opblock-summary").text
    assert "POST" in summary and "/v1/embeddings" in summary, summary
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    for path in ["/v1/embeddings", "/v1/rerank", "/v1/models", "/health"]:
        assert any(p.startswith(path) for p in paths), (path, paths)
    assert not browser.find_elements(By.CSS_SELECTOR, ".errors-wrapper"), "Swagger UI shows errors"

    # What is drawn: the operation's block has its badge's green, and dark text on its light
    # background, at the size of a real block.
    shot = Image.open(io.BytesIO(operation.screenshot_as_png)).convert("RGB")
    width, height = shot.size
    assert width > 400 and height > 20, shot.size
    pixels = list(shot.getdata())
    green = sum(1 for p in pixels if all(abs(a - b) <= 12 for a, b in zip(p, POST_GREEN)))
    # Swagger UI's text is #3b4151 on a pale green.
    dark = sum(1 for p in pixels if sum(p) < 330)
    assert green > 0.02 * len(pixels), f"{green} of {len(pixels)} pixels are POST green"
    assert dark > 0.005 * len(pixels), f"{dark} of {len(pixels)} pixels are text"
    browser.save_screenshot(SCREENSHOT)
finally:
    browser.quit()

print("ok")
