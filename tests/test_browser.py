"""The drawing page in a real browser (headless Chromium driven by selenium), against a real
server in this process: a 7 drawn with pointer events is read as a 7, an X as not a digit, two
digits side by side as their number, a finger works as well as a mouse, Clear brings back the
prompt, and an answer that comes late never replaces a newer one."""

import os
import shutil
import socket
import threading
import time

import pytest

from conftest import missing, running_server

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None

CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1000,900"]


def open_page(server, user_data_dir, phone=False):
    """Headless Chromium on the served page: a desktop window, or a phone's screen."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROME_FLAGS + [f"--user-data-dir={user_data_dir}"]:
        options.add_argument(flag)
    if phone:  # an iPhone 12's screen: 390 x 844 CSS pixels
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0},
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    driver.get(f"http://127.0.0.1:{server.server_port}/")
    return driver


@pytest.fixture(scope="module")
def server(shipped_classifier, shipped_gate):
    """make_server with the shipped model, when a browser can be had."""
    absent = [what for what, found in [("selenium (pip install selenium)", webdriver),
                                       ("Chromium", shutil.which("chromium")),
                                       ("chromedriver", shutil.which("chromedriver"))]
              if not found]
    if absent:  # CI (.ci/run) installs them: there the test must run, not skip
        missing(f"the browser test needs {' and '.join(absent)} (Debian: apt-get install "
                "chromium chromium-driver)")
    with running_server(shipped_classifier, shipped_gate) as server:
        yield server


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    driver = open_page(server, tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def blank_canvas(request):
    """Each test starts on a cleared canvas, whatever the test before it drew."""
    if "page" in request.fixturenames:
        page = request.getfixturevalue("page")
        page.find_element(By.ID, "clear").click()
        wait_for_prompt(page)


def stroke(driver, kind, *points):
    """One stroke through points given as fractions of the canvas' width and height."""
    canvas = driver.find_element(By.ID, "canvas")
    size = canvas.size["width"]
    actions = ActionBuilder(driver, mouse=PointerInput(kind, kind), duration=10)
    # Selenium's offsets are from the element's centre.
    move = lambda x, y: actions.pointer_action.move_to(canvas, (x - 0.5) * size, (y - 0.5) * size)
    move(*points[0])
    actions.pointer_action.pointer_down()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for step in range(1, 11):
            move(x0 + (x1 - x0) * step / 10, y0 + (y1 - y0) * step / 10)
    actions.pointer_action.pointer_up()
    actions.perform()


def shown(driver):
    """(the big digit's text, the ten bars' probabilities, the ten bars' drawn heights)."""
    return driver.execute_script("""
        const bars = [...Array(10).keys()].map(d => document.getElementById(`bar-${d}`));
        return [document.getElementById('digit').textContent,
                bars.map(bar => Number(bar.dataset.p)),
                bars.map(bar => bar.getBoundingClientRect().height)];""")


def wait_for_digit(driver, digit):
    """Wait until the page shows `digit`, its bar the longest, drawn (not still growing)."""
    def done(driver):
        text, probabilities, heights = shown(driver)
        return text == str(digit) and max(probabilities) == probabilities[digit] and \
            heights[digit] == max(heights) and heights[digit] >= 0.9 * probabilities[digit] * \
            driver.find_element(By.ID, f"bar-{digit}").find_element(By.XPATH, "..").size["height"]
    WebDriverWait(driver, 15, poll_frequency=0.1).until(done, f"the page never showed a {digit}")


def wait_for_number(driver, number, timeout=15):
    WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda driver: shown(driver)[0] == number, f"the page never showed {number}")


def draw_one_then_seven(driver):
    """"17": a 1 on the left half of the canvas, then a 7 on the right half."""
    stroke(driver, interaction.POINTER_MOUSE, (0.25, 0.2), (0.22, 0.8))
    stroke(driver, interaction.POINTER_MOUSE, (0.48, 0.22), (0.82, 0.22))
    stroke(driver, interaction.POINTER_MOUSE, (0.82, 0.22), (0.6, 0.8))


def wait_for_prompt(driver):
    def blank(driver):
        text, probabilities, _ = shown(driver)
        prompt = driver.find_element(By.ID, "prompt")
        return text == "?" and not any(probabilities) and prompt.is_displayed() and \
            prompt.text == "Draw a digit"
    WebDriverWait(driver, 15, poll_frequency=0.1).until(blank, "the prompt never came back")


def test_a_seven_drawn_with_a_mouse_is_a_seven(page, tmp_path):
    wait_for_prompt(page)  # a blank canvas, at first
    stroke(page, interaction.POINTER_MOUSE, (0.27, 0.22), (0.73, 0.22))
    stroke(page, interaction.POINTER_MOUSE, (0.73, 0.22), (0.45, 0.82))
    wait_for_digit(page, 7)
    assert not page.find_element(By.ID, "prompt").is_displayed()
    assert page.find_element(By.ID, "status").text == ""
    assert "% sure" in page.find_element(By.ID, "confidence").text
    page.save_screenshot(str(tmp_path / "serve_page.png"))
    if os.environ.get("MDR_SCREENSHOT"):
        page.save_screenshot(os.environ["MDR_SCREENSHOT"])


def test_an_x_is_not_a_digit_and_a_digit_drawn_next_is(page):
    stroke(page, interaction.POINTER_MOUSE, (0.25, 0.2), (0.75, 0.8))
    stroke(page, interaction.POINTER_MOUSE, (0.75, 0.2), (0.25, 0.8))
    wait_for_number(page, "not a digit")
    assert page.find_element(By.ID, "confidence").text.startswith("closest: ")
    assert not page.find_elements(By.CSS_SELECTOR, ".top"), "a bar is marked as the digit"
    page.find_element(By.ID, "clear").click()
    wait_for_prompt(page)
    stroke(page, interaction.POINTER_MOUSE, (0.27, 0.22), (0.73, 0.22))
    stroke(page, interaction.POINTER_MOUSE, (0.73, 0.22), (0.45, 0.82))
    wait_for_digit(page, 7)


def test_clear_brings_back_the_prompt(page):
    stroke(page, interaction.POINTER_MOUSE, (0.55, 0.18), (0.45, 0.82))
    wait_for_digit(page, 1)  # the prompt has gone: Clear has something to clear
    assert not page.find_element(By.ID, "prompt").is_displayed()
    page.find_element(By.ID, "clear").click()
    wait_for_prompt(page)


def test_a_finger_draws_too(page):
    stroke(page, interaction.POINTER_TOUCH, (0.55, 0.18), (0.45, 0.82))
    wait_for_digit(page, 1)


def test_on_a_phone_the_page_fits_the_screen_and_a_finger_draws(server, tmp_path):
    phone = open_page(server, tmp_path / "chromium", phone=True)
    try:
        stroke(phone, interaction.POINTER_TOUCH, (0.27, 0.22), (0.73, 0.22))
        stroke(phone, interaction.POINTER_TOUCH, (0.73, 0.22), (0.45, 0.82))
        wait_for_digit(phone, 7)
        width, height, right, bottom = phone.execute_script("""
            const box = document.querySelector('.card').getBoundingClientRect();
            return [window.innerWidth, window.innerHeight, box.right, box.bottom];""")
        assert width == 390 and right <= width, "the page is wider than the phone"
        assert bottom <= height, "the answer is below the fold"
        if os.environ.get("MDR_SCREENSHOT"):
            phone.save_screenshot(os.environ["MDR_SCREENSHOT"].replace(".png", "_phone.png"))
    finally:
        phone.quit()


def test_two_digits_side_by_side_are_read_as_their_number(page):
    draw_one_then_seven(page)
    wait_for_number(page, "17")
    confidence = page.find_element(By.ID, "confidence").text
    assert confidence.startswith("2 digits: ") and "sure \u00b7 the bars: the tallest, " in \
        confidence, confidence


def test_an_answer_that_comes_after_a_newer_ones_never_replaces_it(page, server):
    """As on a busy machine: the answer to the 1 alone comes 5 s late. The drawing as the pen
    leaves it goes at once, so "17" is shown before that answer comes; when it comes, it is
    dropped."""
    late = threading.Event()
    first = threading.Lock()
    answer = server.read_and_answer

    def first_answer_late(body, content_type):
        result = answer(body, content_type)
        if first.acquire(blocking=False):  # the first request only
            time.sleep(5)
            late.set()
        return result

    server.read_and_answer = first_answer_late
    try:
        draw_one_then_seven(page)
        wait_for_number(page, "17")
        assert not late.is_set(), "the newer drawing waited for the late answer"
        assert late.wait(10)
        ends = time.monotonic() + 1.5  # time enough for the page to take the late answer
        while time.monotonic() < ends:
            assert shown(page)[0] == "17", "a late answer replaced a newer one"
            time.sleep(0.05)
    finally:
        del server.read_and_answer


def test_a_server_that_is_gone_is_reported(page):
    home = page.current_url
    with running_server(None) as server:  # the page needs no model; it is gone before
        page.get(f"http://127.0.0.1:{server.server_port}/")
    # Its port stays taken, by a socket that does not listen: no other test's server (pytest
    # -n runs several at once) can answer in its place.
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", server.server_port))
    try:
        stroke(page, interaction.POINTER_MOUSE, (0.5, 0.2), (0.5, 0.8))
        WebDriverWait(page, 15, poll_frequency=0.1).until(
            lambda page: "Cannot reach the server" in page.find_element(By.ID, "status").text,
            "no word on the status line")
    finally:
        blocker.close()
        page.get(home)
