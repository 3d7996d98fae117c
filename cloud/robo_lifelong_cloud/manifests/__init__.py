"""Sedna manifests for one robot: S3 Secret, Dataset and LifelongLearningJob.

``robo-lifelong-manifests --out DIR`` (``robo_lifelong_cloud.render_manifests``) writes three files
for ``kubectl apply -f DIR``. One module a step, each importing only the ones before it:

- ``settings``: the inputs, each a ``--flag`` or else an environment variable of Sedna's robot
  example (``S3_ENDPOINT``, ``S3_PREFIX``, ``DATA_NODE`` ...), and which required ones are missing;
- ``config``: the validated ``ManifestConfig`` built from them (derived defaults filled in);
- ``objects``: the three Kubernetes objects as dicts;
- ``writer``: the YAML files (PyYAML dumps the dicts, so no value can change the structure).

The S3 keys are read only from the environment (a flag would leave them in shell history and in
``ps``) and are written only into the Secret file, which is created mode 0600.
"""
