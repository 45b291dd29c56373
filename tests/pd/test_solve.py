"""The solver module's process settings."""

import platform
import sys

import pytest

from tpopk.pd.solve import keep_freed_memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's mallopt only",
)
def test_glibc_takes_the_keep_freed_memory_settings():
    # Idempotent: the fitting path calls it once per compile.
    assert keep_freed_memory()
    assert keep_freed_memory()


def test_keep_freed_memory_says_false_where_it_cannot(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not keep_freed_memory()
