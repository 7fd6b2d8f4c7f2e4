#!/usr/bin/env bash
# Installs headless Chromium and chromium-driver from Debian's packages when
# either is missing: the web console's tests drive a real browser with them.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "the console tests need chromium and chromedriver; install them with your package manager" >&2
    exit 1
fi
sudo=""
if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi
echo "installing chromium and chromium-driver (Debian packages)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
chromium --version
