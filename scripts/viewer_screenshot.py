"""Refresh the README's picture of the viewer, ``docs/viewer.png`` (on purpose, never in tests).

Run: ``python scripts/viewer_screenshot.py [--scale 2.5] [--out docs/viewer.png]``.  Serves
the app with the shipped model on a free loopback port, opens it in headless Chromium
(``scripts/install_browser.sh``), waits for the zoom and saves the window.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=2.5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "viewer.png")
    args = parser.parse_args()

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from metasrgan.viewer.server import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.execute_script("return window.viewerStats.zooms.length") > 0)
        driver.execute_script(
            "const el = document.getElementById('scale'); el.value = String(arguments[0]);"
            "el.dispatchEvent(new Event('input', {bubbles: true}))",
            args.scale,
        )
        want = f"/{args.scale:.2f}/{args.scale:.2f}"
        wait.until(
            lambda d: d.execute_script("return window.viewerStats.zooms.at(-1).key").endswith(want)
        )
        time.sleep(0.5)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out}")
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
