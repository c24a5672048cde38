#!/usr/bin/env bash
# Build the one-folder bundle: dist/repic/repic (repic.exe on Windows under Git Bash).
# Usage: installers/pyinstaller/build.sh [PYTHON] [OUT_DIR]
#   PYTHON:  an interpreter whose environment has the app's requirements and PyInstaller
#            (pip install -r installers/pyinstaller/requirements-build.txt); default: python3
#   OUT_DIR: where build/ and dist/ go; default: ./build-pyinstaller
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:-python3}"
out="${2:-$root/build-pyinstaller}"
mkdir -p "$out"
cd "$root"
"$py" -m PyInstaller --noconfirm --clean \
    --workpath "$out/build" --distpath "$out/dist" \
    "$here/repic.spec"
echo "bundle: $out/dist/repic  ($(du -sh "$out/dist/repic" | cut -f1))"
