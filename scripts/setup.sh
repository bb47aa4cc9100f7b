#!/usr/bin/env bash
# Set up inkapp in ./.venv on a fresh machine. With --test, also the test tools and
# Debian's chromium and the CJK font (fonts-noto-cjk) for the browser test (apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
if [ "${1:-}" = "--test" ]; then
  .venv/bin/pip install -q -e '.[test]'
  # iiif-prezi3 builds the tests' IIIF manifests; every release pins Pillow<=12.0.0, so it is
  # installed without its dependencies (pydantic and requests come from above) to keep the
  # image decoder of untrusted uploads on the Pillow that inkapp itself resolves.
  .venv/bin/pip install -q --no-deps iiif-prezi3==3.1.1
  if [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then  # a CJK font for the Chinese names in PDF records
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q fonts-wqy-microhei >/dev/null || $SUDO sh -c 'apt-get update -q && apt-get install -y -q fonts-wqy-microhei' >/dev/null
  fi
  if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q chromium fonts-noto-cjk >/dev/null || $SUDO sh -c 'apt-get update -q && apt-get install -y -q chromium fonts-noto-cjk' >/dev/null
  fi
else
  .venv/bin/pip install -q -e .
fi
