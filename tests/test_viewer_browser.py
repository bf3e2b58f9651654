"""End to end in real headless Chromium: zoom, window/level, slice scrolling, physical-space
display of an anisotropic scan, and the downloads.

Uses Debian's ``chromium`` and ``chromium-driver`` (``scripts/install_browser.sh``, run by
``make test``) through Selenium; nothing is downloaded.  Without them the test skips with
the reason locally and FAILS in CI (``CI=true``).  Screenshots go to a temporary folder
(``scripts/viewer_screenshot.py`` refreshes the README's ``docs/viewer.png`` on purpose).
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
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


def start_browser(download_dir: Path | None = None):
    """Headless Chromium through Selenium (also used by benchmarks and the screenshot)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in LAUNCH_ARGS:
        options.add_argument(arg)
    if download_dir is not None:
        prefs = {
            "download.default_directory": str(download_dir),
            "download.prompt_for_download": False,
        }
        options.add_experimental_option("prefs", prefs)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def serve(app):
    """The app on a free loopback port, served by uvicorn in a thread: (url, stop)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the viewer's server did not start"
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}/", stop


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    reason = _missing()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    driver = start_browser(downloads)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served():
    from metasrgan.inference import load
    from metasrgan.viewer.server import create_app

    torch.set_num_threads(1)  # a busy 2-core machine: no OpenMP stalls
    model = load()
    # the page's WebGL path is for models without data consistency or self-calibration (an
    # FFT over the whole output, done on the server: tests/test_viewer_hardening.py); here it
    # runs the shipped network without those last steps, on both sides of the comparison
    model.data_consistency = False
    model.self_calibrate = False
    app = create_app(model=model)
    url, stop = serve(app)
    yield app, url
    stop()


def _helpers(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 90, poll_frequency=0.1)

    def js(script: str, *args):
        return browser.execute_script(script, *args)

    def width(canvas_id: str) -> int:
        return js(f"return document.getElementById('{canvas_id}').width")

    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    return wait, js, width, text


def test_zoom_slider_updates_images_and_timings(browser, served, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from metasrgan.viewer.engine import snap_scale

    app, url = served
    wait, js, width, text = _helpers(browser)
    browser.get(url)
    # the bundled sample is preselected: axial slice 213 x 181, zoom x2 to start
    wait.until(lambda d: width("sr") == 362 and "ms" in text("timings"))
    assert "colin27_val" in text("message") and "1.00 × 1.00 × 1.00 mm" in text("message")
    assert width("bicubic") == 362 and width("diff") == 362 and width("lr") == 181
    banner = browser.find_element(By.ID, "untrained")
    assert banner.is_displayed() == app.state.viewer.model_info["untrained"]
    # every panel covers the same physical extent: the input is drawn as large as the zoom
    sizes = js("return [...document.querySelectorAll('.stage')].map(s => s.offsetWidth)")
    assert sizes == [362] * 4

    slider = browser.find_element(By.ID, "scale")
    slider.send_keys(Keys.END)  # keyboard: straight to x4
    wait.until(lambda d: width("sr") == 724 and "×4.000" in text("timings"))
    assert js("return document.querySelector('.stage').offsetWidth") == 724

    # drag the thumb back by a third: many input events, the newest wish is what shows
    half = slider.size["width"] // 2
    ActionChains(browser).move_to_element_with_offset(
        slider, half - 6, 0
    ).click_and_hold().move_by_offset(-slider.size["width"] // 3, 0).release().perform()
    value = float(slider.get_attribute("value"))
    assert 2.0 < value < 3.9
    expected = math.floor(181 * snap_scale(value))
    wait.until(lambda d: width("sr") == expected and width("bicubic") == expected)
    wait.until(lambda d: f"×{float(snap_scale(value)):.3f}" in text("timings"))
    for shown in (text("time-metasrgan"), text("time-bicubic"), text("time-display")):
        assert re.fullmatch(r"\d+(\.\d)? ms", shown), shown
    assert "error" not in browser.find_element(By.ID, "message").get_attribute("class")
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    assert browser.save_screenshot(str(tmp_path / "viewer.png"))

    # a bad file: a clear message in the page, and the page keeps working
    upload = browser.find_element(By.ID, "upload")
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a scan" * 50)
    upload.send_keys(str(broken))
    message = browser.find_element(By.ID, "message")
    wait.until(lambda d: "error" in message.get_attribute("class"))
    assert text("message").startswith("broken.nii.gz: ")  # the server's reason, by name
    # a good one: a real-MRI crop as PNG is loaded, selected and zoomed
    upload.send_keys(str(_sample_crop_png(tmp_path / "crop.png")))
    expected = math.floor(64 * snap_scale(value))
    wait.until(lambda d: "crop.png" in text("message") and width("sr") == expected)
    assert "crop.png" in browser.find_element(By.ID, "volume").text


def _pixel(js, canvas_id: str, x: int, y: int) -> int:
    return js(
        "const c = document.getElementById(arguments[0]);"
        "return c.getContext('2d').getImageData(arguments[1], arguments[2], 1, 1).data[0];",
        canvas_id,
        x,
        y,
    )


def test_window_level_drag_and_presets(browser, served):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, url = served
    wait, js, width, text = _helpers(browser)
    browser.get(url)
    wait.until(lambda d: width("sr") == 362 and "ms" in text("timings"))
    level, win = (
        float(browser.find_element(By.ID, i).get_attribute("value"))
        for i in ("wl-level", "wl-width")
    )
    before = [_pixel(js, "lr", 90, 106), _pixel(js, "sr", 180, 212)]
    # drag right and up on the input: a wider window and a higher level, on every panel
    stage = browser.find_elements(By.CLASS_NAME, "stage")[0]
    ActionChains(browser).move_to_element(stage).click_and_hold().move_by_offset(
        80, -40
    ).release().perform()
    wait.until(
        lambda d: Select(d.find_element(By.ID, "wl-preset")).first_selected_option.text == "custom"
    )
    level2, win2 = (
        float(browser.find_element(By.ID, i).get_attribute("value"))
        for i in ("wl-level", "wl-width")
    )
    assert win2 > win * 1.3 and level2 > level
    after = [_pixel(js, "lr", 90, 106), _pixel(js, "sr", 180, 212)]
    assert after[0] != before[0] and after[1] != before[1]
    Select(browser.find_element(By.ID, "wl-preset")).select_by_value("auto")
    wait.until(lambda d: [_pixel(js, "lr", 90, 106), _pixel(js, "sr", 180, 212)] == before)


def test_wheel_and_keyboard_scrolling_fit_and_crosshair(browser, served):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _, url = served
    wait, js, width, text = _helpers(browser)
    browser.get(url)
    wait.until(lambda d: width("sr") == 362 and "ms" in text("timings"))
    stage = browser.find_elements(By.CLASS_NAME, "stage")[0]
    # the mouse wheel over a panel and the arrow keys step through slices
    assert text("slice-value") == "6 / 11"
    viewport = browser.find_elements(By.CLASS_NAME, "viewport")[1]

    def wheel(element, delta):
        event = "new WheelEvent('wheel', {deltaY: arguments[1], bubbles: true, cancelable: true})"
        js(f"arguments[0].dispatchEvent({event})", element, delta)

    wheel(viewport, -100)
    wait.until(lambda d: text("slice-value") == "7 / 11")
    wheel(viewport, 100)
    wheel(viewport, 100)
    wait.until(lambda d: text("slice-value") == "5 / 11")
    browser.find_element(By.TAG_NAME, "body").click()
    js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowUp', bubbles: true}))")
    wait.until(lambda d: text("slice-value") == "6 / 11")
    wait.until(
        lambda d: js("return window.viewerStats.zooms.at(-1).key").endswith("/axial/6/2.00/2.00")
    )
    # fit to window: the whole slice in the panel, its aspect kept; 1:1 undoes it
    browser.find_element(By.ID, "fit").click()
    box = js(
        "const s = document.querySelectorAll('.stage')[1], v = s.parentElement;"
        "return [s.offsetWidth, s.offsetHeight, v.clientWidth, v.clientHeight]"
    )
    assert box[0] <= box[2] + 1 and box[1] <= box[3] + 1
    assert abs(box[0] - box[2]) <= 1 or abs(box[1] - box[3]) <= 1
    assert box[1] / box[0] == pytest.approx(213 / 181, rel=0.01)
    browser.find_element(By.ID, "one-to-one").click()
    assert js("return document.querySelectorAll('.stage')[1].offsetWidth") == 362
    # the crosshair follows a click and names the voxel
    ActionChains(browser).move_to_element_with_offset(stage, 10, 0).click().perform()
    wait.until(lambda d: "crosshair: voxel (" in text("crosshair"))


def _anisotropic_scan(path: Path) -> Path:
    """A real MNI152 crop labelled 1 x 1 x 5 mm: thick axial slices, as clinical scans have."""
    from metasrgan.samples_path import sample_path

    data = np.asarray(nib.load(sample_path("mni152_val")).dataobj, dtype=np.float32)
    crop = data[40:120, 50:110, :]
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    nib.save(nib.Nifti1Image(crop, affine), path)
    return path


def test_anisotropic_scan_in_physical_space_and_downloads(browser, served, downloads, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, url = served
    wait, js, width, text = _helpers(browser)
    browser.get(url)
    wait.until(lambda d: width("sr") == 362 and "ms" in text("timings"))
    scan = _anisotropic_scan(tmp_path / "thick.nii.gz")
    nz = nib.load(scan).shape[2]
    browser.find_element(By.ID, "upload").send_keys(str(scan))
    wait.until(lambda d: "thick.nii.gz" in text("message") and "5.00 mm" in text("message"))
    Select(browser.find_element(By.ID, "axis")).select_by_value("coronal")
    wait.until(
        lambda d: width("lr") == 80 and js("return document.getElementById('lr').height") == nz
    )

    def aspect(index: int) -> float:
        rect = js(f"return document.querySelectorAll('.stage')[{index}].getBoundingClientRect()")
        return rect["height"] / rect["width"]

    # 80 columns of 1 mm across, nz rows of 5 mm down: shown 5 times taller than its pixels
    assert aspect(0) == pytest.approx(nz * 5 / 80, rel=0.02)
    assert browser.find_element(By.CSS_SELECTOR, ".panel .label.top").text == "S"
    browser.find_element(By.ID, "isotropic").click()  # x5 down, x1 across: 1 mm voxels
    wait.until(lambda d: js("return document.getElementById('sr').height") == 5 * nz)
    assert width("sr") == 80 and "×5.000 ↕ ×1.000 ↔" in text("timings")
    assert "1.00 × 1.00 mm" in text("sr-caption")
    assert aspect(1) == pytest.approx(aspect(0), rel=0.02)  # same field of view, square pixels

    browser.find_element(By.ID, "download-nifti").click()
    found = _wait_for_file(downloads, "thick_coronal*_metasrgan.nii.gz")
    img = nib.load(found)
    assert img.shape == (80, 1, 5 * nz)
    np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0), atol=1e-6)
    browser.find_element(By.ID, "download-volume").click()  # the whole scan, 1 mm isotropic
    whole = nib.load(_wait_for_file(downloads, "thick_metasrgan.nii.gz", timeout=120))
    assert whole.shape == (80, 60, 5 * nz)
    np.testing.assert_allclose(whole.header.get_zooms(), (1.0, 1.0, 1.0), atol=1e-6)
    browser.find_element(By.ID, "download-png").click()
    png = _wait_for_file(downloads, "*_metasrgan.png")
    from PIL import Image

    assert Image.open(png).size == (80, 5 * nz)


def _wait_for_file(folder: Path, pattern: str, timeout: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.glob(pattern) if not p.name.endswith(".crdownload")]
        if done and done[0].stat().st_size > 0:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {pattern} downloaded into {folder}: {list(folder.iterdir())}")


def _sample_crop_png(path: Path) -> Path:
    """A 64x64 crop of the bundled Colin27 slab as an 8-bit PNG."""
    from PIL import Image

    from metasrgan.samples_path import sample_path

    data = np.asarray(nib.load(sample_path("colin27_val")).dataobj, dtype=np.float32)
    crop = data[60:124, 70:134, 6]
    Image.fromarray(np.clip(crop / crop.max() * 255, 0, 255).astype(np.uint8)).save(path)
    return path


COMPARE = """
const done = arguments[arguments.length - 1];
const shown = window.viewerDebug.state.shown;
const query = new URLSearchParams(shown.params);
fetch(`/api/zoom.bin?${query}`).then((r) => r.arrayBuffer()).then((buffer) => {
  const server = new Uint16Array(buffer, 0, shown.width * shown.height);
  let max = 0;
  let sum = 0;
  let residual = 0;
  for (let i = 0; i < server.length; i++) {
    const d = Math.abs(shown.srFloat[i] - server[i] / 65535);
    sum += d;
    if (d > max) max = d;
    residual = Math.max(residual, Math.abs(shown.srFloat[i] - shown.bic[i] / 65535));
  }
  done({where: shown.where, max, mean: sum / server.length, n: server.length, residual,
        width: shown.width, height: shown.height});
});
"""


@pytest.mark.parametrize(
    "scale_h,scale_w",
    [(2.0, 2.0), (2.37, 2.37), (3.7, 3.7), (1.5, 2.5), (5.0, 1.0)],
)
def test_the_browser_meta_upscale_equals_the_server_within_tolerance(
    browser, served, tmp_path, scale_h, scale_w
):
    """WebGL2 (here software: SwiftShader) against the server's PyTorch on a 64x64 real-MRI
    crop.  Features cross as float16 and the server's pixels as 16 bits (7.6e-6), so the
    stated tolerance is 2e-4 of the [0, 1] range at any pixel and 2e-5 on average (measured
    with the shipped model: 1.5e-5 and 3.9e-6).  The Meta-Upscale's own contribution (its
    difference from bicubic) is far larger, so a wrong kernel or index cannot pass."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from metasrgan.viewer.engine import snap_scale

    _, url = served
    wait, js, width, text = _helpers(browser)
    if not js("return Boolean(window.viewerDebug)") or "crop.png" not in text("message"):
        browser.get(url)
        wait.until(lambda d: width("sr") == 362 and "ms" in text("timings"))
        browser.find_element(By.ID, "upload").send_keys(
            str(_sample_crop_png(tmp_path / "crop.png"))
        )
        wait.until(lambda d: "crop.png" in text("message") and width("sr") == 128)
        Select(browser.find_element(By.ID, "compute")).select_by_value("browser")
    js("document.getElementById('per-axis').checked = true")
    before = js("return window.viewerStats.zooms.length")
    for control, value in (("scale-h", scale_h), ("scale-w", scale_w)):
        js(
            "const el = document.getElementById(arguments[0]); el.value = String(arguments[1]);"
            "el.dispatchEvent(new Event('input', {bubbles: true}))",
            control,
            value,
        )
    key = f"/{scale_h:.2f}/{scale_w:.2f}"
    wait.until(
        lambda d: (
            js("return window.viewerStats.zooms.length") > before
            and js("return window.viewerStats.zooms.at(-1).key").endswith(key)
        )
    )
    found = browser.execute_async_script(COMPARE)
    assert found["where"] == "browser", text("compute-used")
    assert (found["height"], found["width"]) == (
        math.floor(64 * snap_scale(scale_h)),
        math.floor(64 * snap_scale(scale_w)),
    )
    assert found["max"] <= 2e-4 and found["mean"] <= 2e-5, found
    assert found["residual"] > 50 * found["max"], found
