#!/usr/bin/env bash
# Installs everything niteru needs on a fresh machine: a virtualenv with the project and its dev tools,
# and the MobileNet ImageNet weights where Keras looks for them, converted to LiteRT beside them (what the
# API and the worker run: ai-edge-litert is a main dependency). Idempotent: a second run is quick.
# Used by the Makefile (README quick start, CI) and by docker/Dockerfile, so the steps cannot drift.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=${VENV:-.venv}
# By default the dev tools and the experiments extra (`make test` runs the experiments' tests);
# NITERU_EXTRAS= (empty) installs the service alone, as docker/Dockerfile does.
EXTRAS=${NITERU_EXTRAS-dev,experiments}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
fi
# fastText 0.9.3 fills only `thread`/10 of its input matrix at initialisation and leaves the rest as
# uninitialised memory (facebookresearch/fastText#1061): training then diverges or differs run to run.
# Build it from the PyPI sdist with a one-function patch before the project's own install sees it.
FASTTEXT_VERSION=0.9.3
fasttext_stamp="$VENV/.niteru-fasttext-$FASTTEXT_VERSION-patched"
if [ ! -f "$fasttext_stamp" ]; then
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    "$VENV/bin/pip" download --quiet --no-deps --no-binary :all: "fasttext==$FASTTEXT_VERSION" -d "$build"
    tar -xzf "$build/fasttext-$FASTTEXT_VERSION.tar.gz" -C "$build"
    patch --quiet -d "$build/fasttext-$FASTTEXT_VERSION" -p1 < "scripts/patches/fasttext-$FASTTEXT_VERSION-uniform-init.patch"
    "$VENV/bin/pip" install --quiet --force-reinstall --no-deps "$build/fasttext-$FASTTEXT_VERSION"
    touch "$fasttext_stamp"
fi
# Re-install only when pyproject.toml changed since the last successful install.
stamp="$VENV/.niteru-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/pip" install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
    touch "$stamp"
fi
TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/niteru" weights
