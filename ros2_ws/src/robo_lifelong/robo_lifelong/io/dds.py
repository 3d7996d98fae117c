"""Where the package's Fast DDS profile lives (shared memory for large images; see
``config/fastdds_shm.xml``), for launch files, tests and users setting
``FASTDDS_DEFAULT_PROFILES_FILE`` (Fast DDS 3, ROS 2 Kilted on) or
``FASTRTPS_DEFAULT_PROFILES_FILE`` (Fast DDS 2, Humble and Jazzy: it reads only that name)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from robo_lifelong import share

log = logging.getLogger(__name__)

PROFILE_NAME = 'fastdds_shm.xml'
PROFILES_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
# Fast DDS 2.x (rmw_fastrtps_cpp < 9: Humble, Jazzy) reads the profile only from this name; 3.x
# warns at every start when it is set. Without the profile big images are lost (see the XML).
LEGACY_PROFILES_ENV = 'FASTRTPS_DEFAULT_PROFILES_FILE'


def default_profile_path() -> Path:
    """The Fast DDS profile file: the installed ``share/robo_lifelong/config`` copy, else the one
    in the source tree (``share.find``). ConfigError if there is none."""
    return share.find(f'config/{PROFILE_NAME}')


def _rmw_fastrtps_major() -> int | None:
    """Major version of the installed rmw_fastrtps_cpp (its package.xml), None if not found."""
    try:
        from ament_index_python.packages import get_package_share_directory

        xml = Path(get_package_share_directory('rmw_fastrtps_cpp')) / 'package.xml'
        match = re.search(r'<version>\s*(\d+)\.', xml.read_text())
    except (ImportError, LookupError, OSError) as e:
        log.debug('rmw_fastrtps_cpp version unknown: %s', e)
        return None
    return int(match.group(1)) if match else None


def profile_env_names() -> tuple[str, ...]:
    """The variables to set to the profile path for the installed Fast DDS: both of them unless
    rmw_fastrtps_cpp is 9 or newer (Fast DDS 3), which reads only ``PROFILES_ENV``."""
    major = _rmw_fastrtps_major()
    if major is not None and major >= 9:
        return (PROFILES_ENV,)
    return (PROFILES_ENV, LEGACY_PROFILES_ENV)


def profile_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) with the Fast DDS profile variables
    (``profile_env_names()``) pointing at the package profile, for starting nodes as
    subprocesses."""
    env = dict(os.environ if environ is None else environ)
    path = str(default_profile_path())
    for name in profile_env_names():
        env[name] = path
    return env
