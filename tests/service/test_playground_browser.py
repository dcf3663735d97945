"""The playground in a real browser: Debian's Chromium, headless, driven by Selenium through Debian's
chromedriver (given by path, so Selenium Manager never downloads anything), against a real server process
on 127.0.0.1 serving four shipped models, symlinked into a temporary repository, and the tiny GAN and VAE of
generative_models.py. The server asks for an API key, so the page's 401 path runs too.

Each test compares what the page shows with what the API answers to the same request, sent from here.
With ZOOSERVE_SCREENSHOTS=DIR, each panel is saved as DIR/playground-*.png (docs/playground.md shows them).
Skips only when chromium or chromedriver is not installed (.ci/run installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from selenium.webdriver.support.ui import Select

from tests.service.conftest import RepoWriter
from tests.service.generative_models import add_generative
from tests.service.serve_fixture import ROOT, running_server

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
                                       "chromium-driver; .ci/run does)")
MODELS = ("fashion-lenet", "tweets-transformer-int8", "island-gru", "island-ngram-word3")
GAN, VAE = "tiny-gan", "tiny-vae"  # random weights, no figures in their cards
KEY = "playground-test-key"
SHOTS = os.environ.get("ZOOSERVE_SCREENSHOTS")
WAIT_S = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("playground")
    repo = base / "models"
    repo.mkdir()
    for name in MODELS:
        (repo / name).symlink_to(ROOT / "models" / name, target_is_directory=True)
    add_generative(RepoWriter(repo), GAN, "gan")
    add_generative(RepoWriter(repo), VAE, "vae")
    env = {"ZOOSERVE_API_KEY": KEY, "ZOOSERVE_SHUTDOWN_DRAIN_S": "0"}  # no load balancer to wait for at the end
    with running_server(repo, workdir=base / "run", env=env) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start; the page is our own, on 127.0.0.1.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def api(server, path: str, doc: dict | None = None) -> tuple[int, dict]:
    """The API's own answer to a request, with the key: what the page must show."""
    req = urllib.request.Request(server.base_url + path, None if doc is None else json.dumps(doc).encode(),
                                 {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait(driver, condition):
    """`condition()`'s first true value; an element the page replaced meanwhile just means "not yet"."""
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(lambda d: condition())


def shot(node, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        # In view first: Chromium cuts an element's screenshot at the bottom of the window.
        node.parent.execute_script("arguments[0].scrollIntoView({block: 'start'})", node)
        node.screenshot(str(Path(SHOTS) / f"playground-{name}.png"))


def page_errors(driver) -> list[str]:
    """Console messages that mean the page broke: script errors and anything the CSP blocked. (Failed
    requests, the 401 and 400s these tests provoke, are logged too, and are expected.)"""
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]]


def open_model(driver, server, model: str):
    """Load /ui#model afresh (no key in memory), give the key, and return the panels' container once the
    model's panels are there."""
    driver.get("about:blank")  # from /ui, going to /ui#model would only change the fragment, not reload
    driver.get(f"{server.base_url}/ui#{model}")
    key = wait(driver, lambda: driver.find_element(By.ID, "api-key"))
    key.send_keys(KEY, Keys.ENTER)
    wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, f".pick[aria-pressed=true][data-model='{model}']"))
    return driver.find_element(By.ID, "panels")


def submit(panel, label: str) -> None:
    panel.find_element(By.XPATH, f".//button[normalize-space()='{label}']").click()


def bars(panel) -> list[tuple[str, float]]:
    return [(li.find_element(By.CLASS_NAME, "label").text, float(li.find_element(By.TAG_NAME, "meter").get_attribute("value")))
            for li in panel.find_elements(By.CSS_SELECTOR, ".bars li")]


def same_bars(panel, answer: dict) -> bool:
    """The page's bars are the API's predictions: the same labels in order, the same probabilities."""
    expected = answer["predictions"][0]
    shown = bars(panel)
    return ([label for label, _ in shown] == [p["label"] for p in expected]
            and [p for _, p in shown] == pytest.approx([p["probability"] for p in expected], rel=1e-6))


def test_the_page_asks_for_the_key_in_the_apis_words_then_lists_every_model(server, browser):
    browser.get(server.base_url + "/")  # redirects to /ui, which needs no key
    assert browser.current_url == server.base_url + "/ui"
    error = wait(browser, lambda: browser.find_element(By.ID, "models-error").text)
    req = urllib.request.Request(server.base_url + "/v1/models")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=WAIT_S)
    assert refused.value.code == 401
    assert error == json.loads(refused.value.read())["error"]["message"]  # the OpenAI shape on /v1/models
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"

    browser.switch_to.active_element.send_keys(KEY, Keys.ENTER)
    wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, ".model .pick")) == len(MODELS) + 2)
    shown = {li.find_element(By.CLASS_NAME, "pick").text: li for li in browser.find_elements(By.CLASS_NAME, "model")}
    assert sorted(shown) == sorted([*MODELS, GAN, VAE])  # models, not their further graphs (tiny-vae.decoder)
    for name in MODELS:
        item = shown[name]
        field = {dd.get_attribute("data-field"): dd.text for dd in item.find_elements(By.TAG_NAME, "dd")}
        meta, card = api(server, f"/v2/models/{name}")[1], api(server, f"/v1/models/{name}/card")[1]
        assert field["state"] == "READY" and field["version"] == str(card["version"])
        assert field["provider"] == meta["parameters"]["execution_provider"]
        assert "ONNX" in field["size"] and "split" in field["figures"]
    assert "accuracy 0.9133" in shown["fashion-lenet"].text and "1.1223 nats/char" in shown["island-gru"].text
    assert "perplexity 111.91" in shown["island-ngram-word3"].text
    # The key stays in the page's memory: nothing stored, no cookie.
    assert browser.execute_script("return localStorage.length + sessionStorage.length + document.cookie.length") == 0
    shot(browser.find_element(By.ID, "models"), "models")
    assert not page_errors(browser)


def canvas_pixels(canvas) -> list[list[int]]:
    """A drawing pad's pixels (28, 28), as the page sends them."""
    return canvas.parent.execute_script(
        "const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, 28, 28).data;"
        "return Array.from({length: 28}, (_, y) => Array.from({length: 28}, (_, x) => d[4 * (28 * y + x)]));", canvas)


def test_a_drawing_and_an_uploaded_file_are_classified(server, browser):
    panel = open_model(browser, server, "fashion-lenet")
    canvas = panel.find_element(By.TAG_NAME, "canvas")
    strokes = ActionChains(browser)
    for x in (-40, 40):  # two legs, top to bottom: a pair of trousers, roughly
        strokes.move_to_element_with_offset(canvas, x, -90).click_and_hold().move_by_offset(0, 90).move_by_offset(0, 90).release()
    strokes.perform()
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ARROW_UP * 4).key_up(Keys.SHIFT).perform()  # keyboard ink
    submit(panel, "Classify the drawing")  # the pad loses focus: the keyboard cursor leaves the picture
    wait(browser, lambda: len(bars(panel)) == 5)
    pixels = canvas_pixels(canvas)
    assert sum(map(sum, pixels)) > 0 and pixels[12][14] > 0  # the strokes, and the keyboard's up from the centre
    assert same_bars(panel, api(server, "/v1/models/fashion-lenet/classify", {"arrays": [pixels], "top_k": 5})[1])
    shot(panel.find_element(By.CLASS_NAME, "panel"), "image")

    panel.find_element(By.ID, "image-file").send_keys(str(ROOT / "examples" / "trouser.png"))
    wait(browser, lambda: bars(panel) and bars(panel)[0][0] == "Trouser")
    assert panel.find_element(By.CSS_SELECTOR, "[data-preview]").get_attribute("src").startswith("blob:")
    assert not page_errors(browser)


def test_a_text_is_classified(server, browser):
    panel = open_model(browser, server, "tweets-transformer-int8")
    text = panel.find_element(By.ID, "text-input")
    text.clear()
    text.send_keys("What a wonderful day at the beach!")
    submit(panel, "Classify")
    wait(browser, lambda: len(bars(panel)) == 3)
    expected = api(server, "/v1/models/tweets-transformer-int8/classify",
                   {"text": "What a wonderful day at the beach!", "top_k": 3})[1]
    assert same_bars(panel, expected) and bars(panel)[0][0] == "positive"
    shot(panel.find_element(By.CLASS_NAME, "panel"), "text")
    assert not page_errors(browser)


def fill(panel, values: dict[str, str]) -> None:
    for name, value in values.items():
        field = panel.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)


def test_generation_streams_token_by_token_and_replays_from_its_seed(server, browser):
    panel = open_model(browser, server, "island-gru")
    prompt = "The engineer looked at the sea and"
    fill(panel, {"prompt": prompt, "max_tokens": "300", "temperature": "0.8", "seed": "7"})
    # Record the output's length at every change the browser makes to it, as the stream arrives.
    browser.execute_script(
        "const out = arguments[0]; window.lengths = [];"
        "new MutationObserver(() => window.lengths.push(out.textContent.length))"
        ".observe(out, {childList: true, characterData: true, subtree: true});",
        panel.find_element(By.CLASS_NAME, "generated"))
    # The stream's bytes over a slow network (Chromium's own throttling, about 2 s for these 300 events): on
    # 127.0.0.1 a busy browser could otherwise find the whole answer there at its first read.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                                 "downloadThroughput": 16 * 1024, "uploadThroughput": -1})
    try:
        submit(panel, "Generate")
        finish = wait(browser, lambda: panel.find_element(By.CSS_SELECTOR, "[data-out=finish]"))
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                                     "downloadThroughput": -1, "uploadThroughput": -1})
    out = lambda name: panel.find_element(By.CSS_SELECTOR, f"[data-out={name}]").text  # noqa: E731
    generated = panel.find_element(By.CLASS_NAME, "generated").get_attribute("textContent")
    assert finish.text == "length" and out("tokens") == "300" and out("seed") == "7" and float(out("rate")) > 0
    lengths = [n for n in browser.execute_script("return window.lengths") if n > 0]
    assert int(out("chunks")) > 1 and len(set(lengths)) > 1 and lengths == sorted(lengths), (out("chunks"), lengths)
    status, whole = api(server, "/v2/models/island-gru/generate",
                        {"text_input": prompt, "parameters": {"max_tokens": 300, "temperature": 0.8, "seed": 7}})
    assert status == 200 and generated == whole["text_output"]  # the same seed, the same text
    shot(panel.find_element(By.CLASS_NAME, "panel"), "generate")

    # Without a seed the server draws one (up to 2**63, beyond a JS number) and the page shows all its digits.
    fill(panel, {"max_tokens": "5", "seed": ""})
    submit(panel, "Generate")
    wait(browser, lambda: panel.find_elements(By.CSS_SELECTOR, "[data-out=tokens]") and out("tokens") == "5")
    submit(panel, "Use this seed")
    assert panel.find_element(By.NAME, "seed").get_attribute("value") == out("seed") and out("seed").isdigit()
    assert not page_errors(browser)


def test_a_generator_samples_a_grid_and_an_autoencoder_reconstructs_a_drawing(server, browser):
    panel = open_model(browser, server, GAN)
    fill(panel, {"n": "6", "seed": "3"})
    Select(panel.find_element(By.NAME, "class")).select_by_visible_text("Bag")
    submit(panel, "Sample")
    images = wait(browser, lambda: len(found := panel.find_elements(By.CSS_SELECTOR, ".samples img")) == 6 and found)
    status, answer = api(server, f"/v1/models/{GAN}/sample", {"n": 6, "seed": 3, "class": "Bag"})
    assert status == 200 and [i.get_attribute("src") for i in images] == [f"data:image/png;base64,{p}"
                                                                          for p in answer["images"]]
    assert images[0].get_attribute("alt") == "Sample 1: Bag"
    assert panel.find_element(By.CSS_SELECTOR, "[data-out=seed]").text == "3"
    shot(panel.find_element(By.CLASS_NAME, "panel"), "sample")

    panel = open_model(browser, server, VAE)  # a VAE samples (it has a prior) and reconstructs
    sample, rec = panel.find_elements(By.CLASS_NAME, "panel")
    assert not sample.find_element(By.NAME, "class").is_displayed()  # unconditional: no class to choose
    canvas = rec.find_element(By.TAG_NAME, "canvas")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)  # below the samples' panel
    ActionChains(browser).move_to_element_with_offset(canvas, 0, -60).click_and_hold().move_by_offset(0, 120).release().perform()
    submit(rec, "Reconstruct the drawing")
    made = wait(browser, lambda: (src := rec.find_element(By.CSS_SELECTOR, "[data-reconstruction]").get_attribute("src"))
                and src.startswith("data:") and src)
    pixels = canvas_pixels(canvas)
    assert sum(map(sum, pixels)) > 0
    status, answer = api(server, f"/v1/models/{VAE}/reconstruct", {"arrays": [pixels]})
    assert status == 200 and made == f"data:image/png;base64,{answer['images'][0]}"
    assert rec.find_element(By.CLASS_NAME, "code").text.startswith("code (8 numbers): ")
    shot(rec, "reconstruct")
    assert not page_errors(browser)


def test_a_score_colours_each_token_and_gives_the_apis_figures(server, browser):
    panel = open_model(browser, server, "island-ngram-word3")
    text = "The engineer looked at the sea."
    fill(panel, {"text": text})
    submit(panel, "Score")
    score = panel.find_elements(By.CLASS_NAME, "panel")[1]  # a language model's second panel
    spans = wait(browser, lambda: score.find_elements(By.CSS_SELECTOR, ".scored span"))
    answer = api(server, "/v1/models/island-ngram-word3/score", {"text": text})[1]
    bands = {f"lp{i}": i for i in range(6)}
    # Each token in its band of log-probability (the legend's edges), in the API's order.
    edges = [-0.5, -1.5, -3, -5, -8]
    expected = [next((i for i, edge in enumerate(edges) if t["logprob"] > edge), 5) for t in answer["tokens"]]
    assert [bands[s.get_attribute("class")] for s in spans] == expected
    assert [s.get_attribute("textContent") for s in spans][:3] == [t["token"] for t in answer["tokens"]][:3]
    status = score.find_element(By.CLASS_NAME, "status").text
    assert f"perplexity {answer['perplexity']:.2f}" in status and f"{answer['token_count']} tokens" in status
    shot(score, "score")
    assert not page_errors(browser)


def test_a_bad_parameter_shows_the_apis_own_message(server, browser):
    panel = open_model(browser, server, "island-gru")
    fill(panel, {"temperature": "-1"})
    submit(panel, "Generate")
    error = wait(browser, lambda: panel.find_element(By.CSS_SELECTOR, ".panel .error").text)
    status, answer = api(server, "/v2/models/island-gru/generate_stream",
                         {"text_input": "The engineer looked at the sea and", "parameters": {"temperature": -1}})
    assert status == 400 and error == answer["error"]
    shot(panel.find_element(By.CLASS_NAME, "panel"), "error")
    assert not page_errors(browser)


def test_the_live_panel_reads_the_metrics(server, browser):
    for _ in range(3):  # one at a time: three batches at least
        assert api(server, "/v1/models/fashion-lenet/classify", {"arrays": [[[0] * 28] * 28]})[0] == 200
    open_model(browser, server, "fashion-lenet")

    def lenet_row():  # the table is drawn again every 2 s: read a row whole, in one go
        for tr in browser.find_elements(By.CSS_SELECTOR, "#metrics-rows tr"):
            if tr.find_element(By.TAG_NAME, "th").text == "fashion-lenet":
                return [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        return None

    # requests/s needs two reads; then batches formed, mean rows per batch, mean queue wait
    cells = wait(browser, lambda: (row := lenet_row()) and row[0] != "–" and row)
    assert float(cells[0]) >= 0 and int(cells[1]) >= 3 and float(cells[2]) >= 1 and cells[3].endswith(" ms")
    assert browser.find_element(By.ID, "rps").text != "–"
    shot(browser.find_element(By.ID, "live"), "metrics")
    assert not page_errors(browser)


def test_the_page_fits_a_phone_screen(server, browser):
    browser.set_window_size(390, 844)
    try:
        panel = open_model(browser, server, "island-gru")
        # One column: nothing wider than the screen, so the page never scrolls sideways.
        assert browser.execute_script("const e = document.documentElement; return e.scrollWidth - e.clientWidth") == 0
        box = browser.execute_script("return arguments[0].getBoundingClientRect().width", panel)
        assert 300 < box <= 390
        shot(panel.find_element(By.CLASS_NAME, "panel"), "phone")
    finally:
        browser.set_window_size(1280, 1400)
