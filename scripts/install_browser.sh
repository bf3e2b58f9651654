#!/usr/bin/env bash
# Install the headless browser for the viewer's end-to-end test: Debian's chromium and its
# matching chromedriver, from the distribution's packages (never a downloaded browser build).
# Idempotent: does nothing when both are present.  Needs root (or sudo) and apt-get.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    echo "install_browser: chromium and chromedriver already installed ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: apt-get not found; install Chromium and chromedriver by hand" \
        "(the browser test skips locally and fails in CI without them)" >&2
    exit 0
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_browser: not root and no password-less sudo; skipping the Chromium install" \
            "(the browser test skips locally and fails in CI without it)" >&2
        exit 0
    fi
fi
echo "install_browser: installing Debian's chromium and chromium-driver with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -q && \
        $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver; }; then
    echo "install_browser: apt-get could not install chromium" \
        "(the browser test skips locally and fails in CI without it)" >&2
    exit 0
fi
echo "install_browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
