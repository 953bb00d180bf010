"""Implementation choice: defaults per device, FRSENGINE_KERNELS override, extension fallback."""
from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch

from frsengine.ops import _ext, dispatch
from frsengine.ops.beta_aggregation import aggregate
from frsengine.ops.fused_mixed import mixed_op_module_forward
from opcases import random_mixed_op

CPU = torch.device("cpu")


def test_reference_always_available():
    for op in ("mixed_op", "beta_aggregate"):
        assert "reference" in dispatch.available_backends(op, "cpu")


def test_default_is_cpp_on_cpu_when_built(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    expected = "cpp" if dispatch.unavailable_reason("cpp", CPU) is None else "reference"
    assert dispatch.backend_for("mixed_op", "cpu") == expected
    # The interpreter is for tests only: never picked on its own, even when enabled.
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.backend_for("beta_aggregate", "cpu") == expected


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_env_var_forces_the_implementation_that_runs(backend, monkeypatch):
    if dispatch.unavailable_reason(backend, CPU) is not None:
        pytest.skip(dispatch.unavailable_reason(backend, CPU))
    monkeypatch.setenv(dispatch.ENV_VAR, backend)
    ran = []
    for op in ("mixed_op", "beta_aggregate"):
        impl = dispatch._REGISTRY[op][backend]
        spy = (lambda f, name: (lambda *a: ran.append(name) or f(*a)))(impl.forward, op)
        monkeypatch.setitem(dispatch._REGISTRY[op], backend, dispatch.Implementation(spy, impl.backward))
    mixed_op_module_forward(random_mixed_op(4, True), torch.randn(1, 4, 8, 8), torch.softmax(torch.randn(4), 0))
    aggregate([torch.randn(1, 2, 4, 4)], torch.ones(1), (8, 8))
    assert ran == ["mixed_op", "beta_aggregate"]


def test_env_var_errors(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="not one of"):
        dispatch.backend_for("mixed_op", "cpu")
    monkeypatch.setenv(dispatch.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="cannot run mixed_op on cpu"):
        dispatch.backend_for("mixed_op", "cpu")
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        dispatch.backend_for("beta_aggregate", "cpu")


@pytest.fixture
def fresh_extension_state(monkeypatch):
    """Forget the loaded extension for the test; restore the real state afterwards."""
    saved = dict(_ext._state)
    _ext._state.clear()
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    yield
    _ext._state.clear()
    _ext._state.update(saved)


def _run_and_collect_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = dispatch.backend_for("mixed_op", "cpu")
        dispatch.backend_for("beta_aggregate", "cpu")  # a second call must not warn again
        out = mixed_op_module_forward(random_mixed_op(4, True), torch.randn(1, 4, 8, 8),
                                      torch.softmax(torch.randn(4), 0))
    return backend, out, [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_missing_extension_falls_back_with_one_warning(fresh_extension_state, monkeypatch):
    monkeypatch.setitem(sys.modules, "frsengine._C", None)  # makes `import frsengine._C` fail
    backend, out, warns = _run_and_collect_warnings()
    assert backend == "reference"
    assert torch.isfinite(out).all()
    assert len(warns) == 1 and "could not be imported" in str(warns[0].message)


def test_stale_extension_falls_back_with_one_warning(fresh_extension_state, monkeypatch):
    stale = types.ModuleType("frsengine._C")
    stale.BUILD_STAMP = "api0-torch1.0"
    monkeypatch.setitem(sys.modules, "frsengine._C", stale)
    backend, _, warns = _run_and_collect_warnings()
    assert backend == "reference"
    assert len(warns) == 1 and "stale" in str(warns[0].message)
    monkeypatch.setenv(dispatch.ENV_VAR, "cpp")
    with pytest.raises(RuntimeError, match="stale"):
        dispatch.backend_for("mixed_op", "cpu")


def test_package_imports_without_native_code():
    """Importing frsengine.ops must not load the extension (it loads on the first call)."""
    import subprocess
    code = ("import sys, frsengine.ops; assert 'frsengine._C' not in sys.modules, 'loaded at import'")
    subprocess.run([sys.executable, "-c", code], check=True)
