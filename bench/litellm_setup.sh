#!/bin/sh
# The LiteLLM proxy that bench/gateway.py compares the gateway against, in a venv of its own
# (bench/.litellm-venv, ignored by git) so its many pins never touch the project's .venv.
#
#     sh bench/litellm_setup.sh [PYTHON]        # default python3.11; again later: a no-op once installed
#
# Needs PyPI (LiteLLM is not in the project's requirements); pip's output goes to
# bench/.litellm-venv/pip.log. Without PyPI the script fails with pip's reason, and gateway.py skips
# the LiteLLM scenario saying so. gateway.py runs the proxy with bench/litellm_config.yaml (the model
# `stub-model` on the stub) and no database.
set -eu

PYTHON="${1:-python3.11}"
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.litellm-venv"
MARKER="$VENV/.installed"

if [ -e "$MARKER" ]; then
    echo "LiteLLM already installed in $VENV: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -m pip install 'litellm[proxy]' >"$VENV/pip.log" 2>&1; then
    tail -n 20 "$VENV/pip.log" >&2
    echo "LiteLLM could not be installed (is PyPI reachable?): bench/gateway.py will skip its scenario." >&2
    exit 1
fi
touch "$MARKER"
echo "LiteLLM installed in $VENV: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
