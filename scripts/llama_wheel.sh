#!/bin/sh
# Builds (once) and installs the llama-cpp-python wheel that serves the offline `local` model.
#
#   scripts/llama_wheel.sh PYTHON [CMAKE_ARGS]               build if needed, install into PYTHON's environment
#   scripts/llama_wheel.sh --wheel-only PYTHON [CMAKE_ARGS]  build if needed, print the wheel's path only
#
# Why not a plain `pip install llama-cpp-python`: PyPI has only its source, so pip compiles
# llama.cpp, and a default build is native (-march=native). Such a wheel uses every instruction the
# build machine has (AVX-512, AMX) and crashes with a general protection fault on a machine that
# lacks them or where the kernel has not enabled them (seen on an AMX Xeon: `ldtilecfg` in
# libggml-cpu.so). pip's wheel cache is keyed by the package, not by CMAKE_ARGS, so a machine that
# once cached a native wheel would keep installing it whatever flags came later.
#
# So the wheel is built here, with pip's cache off, into a folder named after the version and a hash
# of the flags; a second install with the same flags reuses it, a change of flags builds anew.
# The default flags target x86-64 with AVX2, FMA and F16C (Intel since 2013, AMD since 2015) and no
# AVX-512 or AMX: one wheel for every x86-64 machine this project runs on. bench/llama_build.py
# measures it against a build with this machine's AVX-512 instructions.
#
# The version comes from requirements-llm.txt (its `llama-cpp-python==` line), which is also the
# constraints file for the `server` extra's dependencies. Needs cmake, gcc and g++ to build.
set -eu

WHEEL_ONLY=false
if [ "${1:-}" = "--wheel-only" ]; then
    WHEEL_ONLY=true
    shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 [--wheel-only] PYTHON [CMAKE_ARGS]" >&2
    exit 2
fi
PYTHON="$1"
REQUIREMENTS="$(cd "$(dirname "$0")/.." && pwd)/requirements-llm.txt"
VERSION="$(sed -n 's/^llama-cpp-python==\([^[:space:];#]*\).*/\1/p' "$REQUIREMENTS" | head -n 1)"
if [ -z "$VERSION" ]; then
    echo "$REQUIREMENTS has no 'llama-cpp-python==VERSION' line." >&2
    exit 1
fi

# The instruction set is named, not left to GGML_NATIVE=OFF's defaults: those depend on the
# environment (SOURCE_DATE_EPOCH turns them off). AVX-512 and AMX are off unless asked for.
PORTABLE_X86="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
case "$(uname -m)" in
    x86_64 | amd64) DEFAULT_ARGS="$PORTABLE_X86" ;;
    *) DEFAULT_ARGS="-DGGML_NATIVE=OFF" ;;  # the compiler's baseline for the architecture
esac
FLAGS="${2:-$DEFAULT_ARGS}"
KEY="$(printf '%s' "$VERSION $(uname -m) $FLAGS" | sha256sum | cut -c1-12)"
WHEELHOUSE="${LLAMA_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops/wheels}"
DIR="$WHEELHOUSE/llama-cpp-python-$VERSION-$KEY"

if ! ls "$DIR"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "Building llama-cpp-python $VERSION ($FLAGS) into $DIR; about 7 minutes on 2 cores." >&2
    # A folder per process: two installs building at once do not write into each other's.
    PARTIAL="$DIR.partial.$$"
    rm -rf "$PARTIAL"
    mkdir -p "$PARTIAL"
    # pip's output goes to stderr: with --wheel-only, stdout is the wheel's path and nothing else.
    CMAKE_ARGS="$FLAGS" "$PYTHON" -m pip wheel --no-cache-dir --no-deps --wheel-dir "$PARTIAL" \
        "llama-cpp-python==$VERSION" >&2
    printf '%s\n' "$FLAGS" >"$PARTIAL/CMAKE_ARGS"
    # Rename last: an interrupted build never passes for a finished one. If another build of the
    # same flags finished meanwhile, keep that one.
    if ls "$DIR"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        rm -rf "$PARTIAL"
    else
        rm -rf "$DIR"
        mv "$PARTIAL" "$DIR"
    fi
fi

WHEEL="$(ls "$DIR"/llama_cpp_python-*.whl | head -n 1)"
if [ "$WHEEL_ONLY" = true ]; then
    printf '%s\n' "$WHEEL"
    exit 0
fi
# --force-reinstall --no-deps: replace whatever llama-cpp-python is installed (a native build from an
# earlier install). Then the server extra's dependencies, pinned by requirements-llm.txt; the wheel
# is named by its path, so pip never looks for llama-cpp-python in an index or in its cache.
"$PYTHON" -m pip install --no-cache-dir --force-reinstall --no-deps "$WHEEL"
"$PYTHON" -m pip install -c "$REQUIREMENTS" "$WHEEL[server]"
echo "llama-cpp-python $VERSION installed from $WHEEL ($FLAGS)."
# What the build can use, as llama.cpp reports it (AVX512 or AMX here would crash some machines).
"$PYTHON" -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode().strip())"
