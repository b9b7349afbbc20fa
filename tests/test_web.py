"""The web page in a real headless Chromium (Selenium + Debian's chromedriver) against a real uvicorn
serving the ingested slice: load the grid, filter, click a product, see its similar products with the
route and scores, search by an uploaded photo and by text. Screenshots go to tests/artifacts/.

Chromium missing is a failure, not a skip (`.ci/run` installs it); NITERU_SKIP_BROWSER_TESTS=1 skips.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from api.app import create_app
from tests.live_server import serve
from tests.store_fixtures import Ingested

pytestmark = [pytest.mark.weights, pytest.mark.catalog, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 60  # seconds: generous, as the 2 cores are shared with the server, the models and the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if os.environ.get("NITERU_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("NITERU_SKIP_BROWSER_TESTS=1")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: `apt-get install -y chromium chromium-driver` "
            "(.ci/run does), or NITERU_SKIP_BROWSER_TESTS=1 to skip the browser tests"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def base_url(ingested: Ingested) -> Iterator[str]:
    with serve(create_app(ingested.settings, embedders=ingested.embedders)) as url:
        yield url


def test_browse_click_similar_and_search_by_photo(browser: WebDriver, base_url: str, ingested: Ingested) -> None:
    driver = browser
    wait = WebDriverWait(driver, WAIT)
    ARTIFACTS.mkdir(exist_ok=True)

    def cards(grid: str) -> list[WebElement]:
        return driver.find_elements(By.CSS_SELECTOR, f"#{grid} .card")

    def ids(grid: str) -> list[str]:
        return [
            str(c.get_attribute("data-product-id")) for c in driver.find_elements(By.CSS_SELECTOR, f"#{grid} .card")
        ]

    # 1. the grid: products with their images actually decoded, and every category as a filter
    driver.get(base_url + "/")
    wait.until(lambda d: len(cards("catalog-grid")) >= min(48, len(ingested.good)))
    assert driver.title.startswith("niteru")
    wait.until(
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('#catalog-grid img')].slice(0, 6)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
    )
    categories = {b.get_attribute("data-category") for b in driver.find_elements(By.CSS_SELECTOR, "#categories button")}
    assert {r.category for r in ingested.good} <= categories

    # 2. the food filter leaves only food
    driver.find_element(By.CSS_SELECTOR, "#categories button[data-category='food']").click()
    # other test modules may have stored more products: count what the API itself lists
    n_food = httpx.get(f"{base_url}/v1/products", params={"category": "food", "limit": 100}).json()["total"]
    assert n_food >= sum(r.category == "food" for r in ingested.good)
    wait.until(
        lambda d: (
            len(cards("catalog-grid")) == n_food
            or "error" in (d.find_element(By.ID, "status").get_attribute("class") or "")
        )
    )
    metas = [m.text for m in driver.find_elements(By.CSS_SELECTOR, "#catalog-grid .card .meta")]
    assert len(metas) == n_food and all(m.startswith("food") for m in metas)

    # 3. click one: its similar products, the route (known category -> text-leaning weights) and scores
    food_id = ids("catalog-grid")[0]
    cards("catalog-grid")[0].click()
    wait.until(lambda d: len(cards("similar")) == 12)
    assert food_id not in ids("similar")
    route = {dd.get_attribute("data-field"): dd.text for dd in driver.find_elements(By.CSS_SELECTOR, "#route dd")}
    assert route["mode"] == "auto" and route["route"].startswith("known → food"), route
    assert route["weights"] == "image 0.200, text 1.000", route
    scores = [s.text for s in driver.find_elements(By.CSS_SELECTOR, "#similar .card .scores")]
    assert len(scores) == 12 and all(s.startswith("fused ") and " image " in s and " text " in s for s in scores)
    driver.save_screenshot(str(ARTIFACTS / "web-similar.png"))

    # 4. upload a photo of a fashion product (filter back to all): it comes first
    driver.find_element(By.CSS_SELECTOR, "#categories button[data-category='']").click()
    row = next(r for r in ingested.good if r.category == "fashion")
    driver.find_element(By.ID, "photo").send_keys(str((ingested.catalog / row.image).resolve()))
    wait.until(ec.visibility_of_element_located((By.ID, "results")))
    wait.until(lambda d: len(cards("results-grid")) > 0)
    assert ids("results-grid")[0] == row.product_id
    assert driver.find_element(By.CSS_SELECTOR, "#results-grid .card .scores").text == "score 1.000"

    # 5. a text search finds a product by its title
    home = next(r for r in ingested.good if r.category == "home")
    box = driver.find_element(By.ID, "q")
    box.send_keys(home.title)
    box.submit()
    wait.until(lambda d: home.title in d.find_element(By.ID, "results-title").text)
    assert home.product_id in ids("results-grid")
    driver.save_screenshot(str(ARTIFACTS / "web.png"))
    assert (ARTIFACTS / "web.png").stat().st_size > 10_000
