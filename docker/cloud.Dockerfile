# Cloud image: the Sedna LifelongLearningJob train/eval worker (torch CPU by default).
# Build from the repository root:  docker build -f docker/cloud.Dockerfile -t robo-lifelong-cloud .
# CUDA build: add  --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/robo_lifelong

# torch first, from the chosen index: cloud.txt's torch==2.13.0 then matches the installed
# 2.13.0+cpu (or +cuXXX) build, so pip never pulls PyPI's CUDA wheel and its nvidia-* packages.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch==2.13.0

# cloud.txt pulls in robot.txt and onnx.txt (no ROS wheels: the worker does not use ROS).
COPY requirements/robot.txt requirements/onnx.txt requirements/cloud.txt requirements/
RUN pip install --no-cache-dir -r requirements/cloud.txt

COPY ros2_ws/src/robo_lifelong ros2_ws/src/robo_lifelong
COPY cloud cloud
# --no-deps: every dependency is already installed at the pins above (the test checks that each
# package dependency is pinned in requirements/), so nothing here can change a version.
RUN pip install --no-cache-dir --no-deps ros2_ws/src/robo_lifelong ./cloud

# Numeric ids, so that Kubernetes' runAsNonRoot can verify the user without reading /etc/passwd.
RUN groupadd --gid 10001 worker \
    && useradd --create-home --uid 10001 --gid 10001 worker
USER 10001:10001
WORKDIR /home/worker

# A job template's `args: ["train"]` or `args: ["eval"]` selects the worker.
ENTRYPOINT ["robo-lifelong-worker"]
