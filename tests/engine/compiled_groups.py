"""The pytest-xdist groups of the torch.compile tests (minutes each; tests/conftest.py runs them first).

The plain compiled step and the worker test that loads its graph from the session's Inductor cache share a
worker; the fused kernels' steps and decoders (test_fused_norm.py) take the other.
"""

from __future__ import annotations

import pytest

STEP_GRAPHS = pytest.mark.xdist_group("compiled-step")
FUSED_GRAPHS = pytest.mark.xdist_group("compiled-fused")
