"""The per-frame perception core: the frame-input boundary, the pipeline and what one frame
publishes, the alarm policy, sample collection and writing, and terrain.

Imports the base modules, ``io``, ``models`` and ``transfer``.
"""
