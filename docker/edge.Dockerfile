# Robot image: ROS 2 Jazzy (LTS, Ubuntu 24.04, supported until 2029) + the robo_lifelong package.
# Build from the repository root:  docker build -f docker/edge.Dockerfile -t robo-lifelong-edge .
# Jazzy rather than Kilted (what the dev venv's PyPI wheels are): a robot wants the LTS release,
# and the package only uses APIs that exist from Humble on.
FROM ros:jazzy-ros-base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# cv_bridge and OpenCV from apt: they are built against apt's numpy, which pip must not replace.
# ROS apt packages are not version-pinned: the ROS repository keeps only the latest build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3-pip \
        python3-opencv \
        python3-tqdm \
        "ros-${ROS_DISTRO}-cv-bridge" \
    && rm -rf /var/lib/apt/lists/*

# Same pins as requirements/robot.txt (tests/test_docker.py keeps them equal). System-wide with
# --break-system-packages instead of a venv: `ros2 launch` and the colcon-generated node scripts
# run /usr/bin/python3, so these must be importable by the system interpreter. pip only adds
# packages under /usr/local and keeps apt's numpy (onnxruntime needs numpy>=1.21.6).
RUN pip install --no-cache-dir --break-system-packages \
        onnxruntime==1.32.0 \
        boto3==1.44.8 \
        jsonschema==4.26.0 \
        rosbags==0.11.9

# The repository layout is kept so that the package's `launch` symlink (-> ../../../launch)
# resolves inside the image.
WORKDIR /opt/robo_lifelong
COPY launch launch
COPY ros2_ws/src/robo_lifelong ros2_ws/src/robo_lifelong
WORKDIR /opt/robo_lifelong/ros2_ws
RUN source "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && colcon build --packages-select robo_lifelong \
    && rm -rf build log

# Every node the launch files start, and any camera driver run in this image, uses the package's
# shared-memory transport profile (large images are lost over the default UDP transport).
# Jazzy's Fast DDS 2.14 reads only FASTRTPS_DEFAULT_PROFILES_FILE; Fast DDS 3 reads the other name.
ENV FASTDDS_DEFAULT_PROFILES_FILE=/opt/robo_lifelong/ros2_ws/install/robo_lifelong/share/robo_lifelong/config/fastdds_shm.xml
ENV FASTRTPS_DEFAULT_PROFILES_FILE=/opt/robo_lifelong/ros2_ws/install/robo_lifelong/share/robo_lifelong/config/fastdds_shm.xml

# Numeric ids, so that Kubernetes' runAsNonRoot can verify the user without reading /etc/passwd.
RUN groupadd --gid 10001 robo \
    && useradd --create-home --uid 10001 --gid 10001 --shell /bin/bash robo
USER 10001:10001
WORKDIR /home/robo

# Sources ROS and the package's install space, then runs the command (CMD or the pod's args).
ENTRYPOINT ["/bin/bash", "-c", "source \"/opt/ros/${ROS_DISTRO}/setup.bash\" && source /opt/robo_lifelong/ros2_ws/install/setup.bash && exec \"$@\"", "--"]
CMD ["ros2", "launch", "robo_lifelong", "robot.launch.py"]
