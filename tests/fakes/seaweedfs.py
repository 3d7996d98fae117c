"""The SeaweedFS S3 server of the tests and benchmarks lives in the product (the demo's
``--storage s3`` starts it too): ``robo_lifelong_cloud.seaweedfs``."""

from robo_lifelong_cloud.seaweedfs import PROBE_BUCKET, SeaweedS3, free_ports, weed_binary

__all__ = ['PROBE_BUCKET', 'SeaweedS3', 'free_ports', 'weed_binary']
