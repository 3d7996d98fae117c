"""The per-frame perception core: the pipeline, the alarm policy, sample collection and terrain.

Imports the base modules, ``io``, ``models`` and ``transfer``.
"""
