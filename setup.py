"""Build hook for the optional C speed-ups; all other metadata is in setup.cfg.

``optional=True``: without a C compiler the build goes on and ruma.protocol uses its
pure-Python paths, which give the same results, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("ruma.protocol._speedups", ["ruma/protocol/_speedups.c"], optional=True),
    ]
)
