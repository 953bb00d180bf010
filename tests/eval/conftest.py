"""Shared package fixtures (tests/package_fixtures.py), with the default device kept on the CPU."""
from tests.package_fixtures import (  # noqa: F401  (fixtures are found by name)
    _cache_dir, _cpu_only, _one_thread, identity_package, lift_package, tiny_frsnet)
