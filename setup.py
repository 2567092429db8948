"""The one part setup.cfg cannot declare: rpm's optional C extension (clone3 into a
cgroup, rpm/server/managed/_intocgroup.c). Where it cannot be built (no C compiler, no
Python headers), rpm installs without it and spawns as before (see docs/performance.md)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rpm.server.managed._intocgroup",
            ["rpm/server/managed/_intocgroup.c"],
            optional=True,
        )
    ]
)
