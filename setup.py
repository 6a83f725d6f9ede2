"""Only the optional C fast path lives here; everything else is in pyproject.toml.

`optional=True`: where no C compiler is available the build warns and the package installs
without it, and agenttrail runs its pure-Python reference code instead (agenttrail/native)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("agenttrail.native._fastpath", ["agenttrail/native/_fastpath.c"], optional=True)])
