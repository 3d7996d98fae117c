# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
VENV := .venv
BIN := $(VENV)/bin
# rclpy from the PyPI wheels finds its ament resources in the venv prefix.
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint bench docs clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/robo-lifelong-demo --out demo_output

test: setup lint
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m bench.run --out bench/results

docs: setup
	$(BIN)/robo-lifelong-sim docs --out docs

clean:
	rm -rf $(VENV) demo_output ros2_ws/build ros2_ws/install ros2_ws/log
