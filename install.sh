#!/usr/bin/env bash
# The one install command: creates .venv beside this file, installs the pinned
# dependencies of requirements.lock and frsengine itself (editable).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
"$PY" - <<'PYCHECK'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f"frsengine's lock file is for Python 3.11, found {sys.version.split()[0]}: "
             "set PYTHON=/path/to/python3.11 and run install.sh again")
PYCHECK
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet "pip==26.3" "setuptools==84.2.1" "wheel==0.48.0"
# --no-compile: byte-compiling every module of torch & co. at install time takes longer than the
# install itself on a 2-core machine; Python compiles what is imported, once, on first use.
.venv/bin/python -m pip install --quiet --no-compile -r requirements.lock
.venv/bin/python -m pip install --quiet --no-build-isolation --no-deps -e .
.venv/bin/frsengine --version
