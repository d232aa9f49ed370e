#!/usr/bin/env bash
# What a refactor must not change, written to a folder so two trees can be compared with diff -r:
# `crit compile --json` of every shipped .crit file, the example screening with --backend rules
# (eligibility, answer_values, attrition as CSV) and the tests/gold table (timing line dropped).
#   bash benchmarks/behaviour_snapshot.sh OUT [PYTHON]      # run from the tree to snapshot
#   diff -r before/ after/
set -euo pipefail
out=$1; py=${2:-python}
mkdir -p "$out"
crit() { "$py" -P -c 'import sys; from crit.cli import main; sys.argv[0] = "crit"; main()' "$@"; }
for f in criteria/*.crit criteria/examples/*.crit; do
    crit compile --json "$f" > "$out/compile_$(echo "$f" | tr / _).json"
done
db=$(mktemp -d)/example.duckdb
crit run criteria/aristotle.crit examples/mtsamples-sample.jsonl --db "$db" --backend rules > /dev/null 2>&1
for q in "select * from eligibility order by note_id" \
         "select note_id, question, value, unit, converted, reason from answer_values order by all" \
         "select * from attrition order by all"; do
    crit sql "$db" "$q" --csv >> "$out/example_rules.csv"
done
"$py" -P benchmarks/gold_accuracy.py | tail -n +2 > "$out/gold.txt"
rm -rf "$(dirname "$db")"
