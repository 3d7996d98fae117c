"""Off-robot tools over the same core: bag replay, the annotation hand-off and the CLI.

May import every sub-package except ``nodes``.
"""
