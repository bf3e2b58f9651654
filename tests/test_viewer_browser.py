"""End to end in real headless Chromium: load the page, move the zoom slider, see it work.

Uses Debian's ``chromium`` and ``chromium-driver`` (``scripts/install_browser.sh``, run by
``make test``) through Selenium; nothing is downloaded.  Without them the test skips with
the reason locally and FAILS in CI (``CI=true``).  On success it saves the screenshot the
README shows, ``docs/viewer.png``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "viewer.png"
LAUNCH_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,1000",
)

pytestmark = pytest.mark.browser


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            return f"{path} is missing: run scripts/install_browser.sh (Debian's chromium)"
    try:
        import selenium  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed: pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in LAUNCH_ARGS:
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served():
    """The real app on a free loopback port, served by uvicorn in a thread."""
    import uvicorn

    from metasrgan.viewer.server import create_app

    torch.set_num_threads(1)  # a busy 2-core machine: no OpenMP stalls
    app = create_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the viewer's server did not start"
        time.sleep(0.05)
    yield app, f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_zoom_slider_updates_images_and_timings(browser, served, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from metasrgan.viewer.engine import snap_scale

    app, url = served
    wait = WebDriverWait(browser, 90, poll_frequency=0.1)

    def width(canvas_id: str) -> int:
        return browser.execute_script(f"return document.getElementById('{canvas_id}').width")

    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    browser.get(url)
    # the bundled sample is preselected: axial slice 213 x 181, zoom x2 to start
    wait.until(lambda d: width("sr") == 362 and "ms" in text("timings"))
    assert "colin27_val" in text("message")
    assert width("bicubic") == 362 and width("diff") == 362 and width("lr") == 362
    banner = browser.find_element(By.ID, "untrained")
    assert banner.is_displayed() == app.state.viewer.model_info["untrained"]

    slider = browser.find_element(By.ID, "scale")
    slider.send_keys(Keys.END)  # keyboard: straight to x4
    assert width("lr") == 724  # the input view follows the slider at once
    wait.until(lambda d: width("sr") == 724 and "×4.000" in text("timings"))

    # drag the thumb (at the right end) back by a third: many input events, one result counts
    half = slider.size["width"] // 2
    ActionChains(browser).move_to_element_with_offset(
        slider, half - 6, 0
    ).click_and_hold().move_by_offset(-slider.size["width"] // 3, 0).release().perform()
    value = float(slider.get_attribute("value"))
    assert 2.0 < value < 3.9
    expected = math.floor(181 * snap_scale(value))
    wait.until(lambda d: width("sr") == expected and width("bicubic") == expected)
    wait.until(lambda d: f"×{float(snap_scale(value)):.3f}" in text("timings"))
    for shown in (text("time-metasrgan"), text("time-bicubic")):
        assert re.fullmatch(r"\d+(\.\d)? ms", shown), shown
    assert "ms" in text("sr-caption") and "error" not in browser.find_element(
        By.ID, "message"
    ).get_attribute("class")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    shot = tmp_path / "viewer.png"
    assert browser.save_screenshot(str(shot))

    # a bad file: a clear message in the page, and the page keeps working
    upload = browser.find_element(By.ID, "upload")
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a scan" * 50)
    upload.send_keys(str(broken))
    message = browser.find_element(By.ID, "message")
    wait.until(lambda d: "error" in message.get_attribute("class"))
    assert text("message").startswith("broken.nii.gz: ")  # the server's reason, by name
    # a good one: a real-MRI crop as PNG is loaded, selected and zoomed
    crop = _sample_crop_png(tmp_path / "crop.png")
    upload.send_keys(str(crop))
    expected = math.floor(64 * snap_scale(value))
    wait.until(lambda d: "crop.png" in text("message") and width("sr") == expected)
    assert "crop.png" in browser.find_element(By.ID, "volume").text

    SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)  # only a passing run rewrites the README's picture


def _sample_crop_png(path: Path) -> Path:
    """A 64x64 crop of the bundled Colin27 slab as an 8-bit PNG."""
    import nibabel as nib
    import numpy as np
    from PIL import Image

    from metasrgan.samples_path import sample_path

    data = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)
    crop = data[60:124, 70:134, 6]
    Image.fromarray(np.clip(crop / crop.max() * 255, 0, 255).astype(np.uint8)).save(path)
    return path
