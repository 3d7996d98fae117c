"""The SeaweedFS S3 server of the tests and benchmarks lives in the product (the demo's
``--storage s3`` starts it too): ``robo_lifelong_cloud.seaweedfs``. The robot-side suite's venvs
have no cloud package: there the module (standard library only) is loaded from the source tree."""

import importlib.util
import sys
from pathlib import Path

try:
    from robo_lifelong_cloud.seaweedfs import PROBE_BUCKET, SeaweedS3, free_ports, weed_binary
except ModuleNotFoundError as error:
    if error.name != 'robo_lifelong_cloud':
        raise
    _CLOUD = Path(__file__).resolve().parents[2] / 'cloud' / 'robo_lifelong_cloud'
    _SOURCE = _CLOUD / 'seaweedfs.py'
    _spec = importlib.util.spec_from_file_location('tests.fakes._seaweedfs_source', _SOURCE)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _module  # dataclasses look their module up while the body runs
    _spec.loader.exec_module(_module)
    PROBE_BUCKET, SeaweedS3 = _module.PROBE_BUCKET, _module.SeaweedS3
    free_ports, weed_binary = _module.free_ports, _module.weed_binary

__all__ = ['PROBE_BUCKET', 'SeaweedS3', 'free_ports', 'weed_binary']
