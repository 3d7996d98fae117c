# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use:
# ROS 2 Kilted, the cloud worker (torch CPU) and the test tools, with $(FULL_PYTHON).
VENV := .venv
BIN := $(VENV)/bin
FULL_PYTHON ?= python3
# rclpy from the PyPI wheels finds its ament resources in the venv prefix.
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export PYTHONUNBUFFERED := 1

# The robot-side suite (no torch, no cloud worker) in its own venv, e.g.
#   make test-robot PYTHON=python3.10 ROS_DISTRO=jazzy     # venv .venv-jazzy-py310
# It reads the test model package that .venv builds (needs torch) from $(TEST_MODEL).
PYTHON ?= python3
ROS_DISTRO ?= jazzy
ROBOT_VENV = .venv-$(ROS_DISTRO)-$(subst .,,$(subst python,py,$(notdir $(PYTHON))))
TEST_MODEL ?= $(or $(ROBO_LIFELONG_TEST_MODEL_CACHE),.cache/test-model)

.PHONY: setup demo test lint bench docs clean setup-robot test-model test-robot base-model

setup:
	@PYTHON=$(FULL_PYTHON) ROS_DISTRO=kilted VENV=$(VENV) PROFILE=full bash scripts/setup.sh

demo: setup
	$(BIN)/robo-lifelong-demo --out demo_output

test: setup lint
	$(BIN)/python -m pytest tests --durations=20

setup-robot:
	@PYTHON=$(PYTHON) ROS_DISTRO=$(ROS_DISTRO) VENV=$(ROBOT_VENV) PROFILE=robot bash scripts/setup.sh

test-model: setup
	$(BIN)/python -m tests.ros.model_fixture $(TEST_MODEL)

# The S3 tests (marker s3: SeaweedFS, ~2 min) run in the full suite only: the storage code is the
# same pure Python with the same pinned boto3 on every interpreter, its modules are imported (and
# unit-tested on local storage) here too, and leaving them out keeps .ci/run under 25 minutes.
test-robot: setup-robot test-model
	AMENT_PREFIX_PATH=$(abspath $(ROBOT_VENV)) ROBO_LIFELONG_TEST_MODEL_CACHE=$(abspath $(TEST_MODEL)) \
		$(ROBOT_VENV)/bin/python -m pytest tests --suite=robot -m 'not s3' --durations=10

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The base model shipped in ros2_ws/src/robo_lifelong/models/ (seeded; ~25 min on 2 idle cores).
base-model: setup
	$(BIN)/python -m robo_lifelong_cloud.base_model

bench: setup
	$(BIN)/python -m bench.run --out bench/results

docs: setup
	$(BIN)/robo-lifelong-sim docs --out docs

clean:
	rm -rf $(VENV) .venv-*/ .cache/test-model demo_output ros2_ws/build ros2_ws/install ros2_ws/log
