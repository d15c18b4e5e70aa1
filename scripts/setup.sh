#!/usr/bin/env bash
# Set-up on a fresh machine: a .venv with the CPU build of torch, then the package and its dev tools.
# CUDA users: install the torch wheel for your CUDA first (pip install torch --index-url <your CUDA index>),
# then `pip install -e '.[dev]'`; nothing else changes.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU wheel (a plain `pip install torch` pulls a multi-GB CUDA build).
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,eval]"
