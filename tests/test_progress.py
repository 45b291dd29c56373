"""Progress lines, and PyMC's forward-sampling chatter kept out of them."""

from __future__ import annotations

import logging
import re

import pymc as pm
import pytest

from tpopk.progress import quiet_pymc, step


def _forward_sample() -> None:
    with pm.Model():
        pm.Normal("x")
        pm.sample_prior_predictive(draws=2, random_seed=1, compile_kwargs={"mode": "FAST_COMPILE"})


def test_quiet_pymc_drops_sampling_lines_only_inside(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pymc"):
        _forward_sample()
        assert any("Sampling: [x]" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with quiet_pymc():
            _forward_sample()
            logging.getLogger("pymc.sampling.forward").warning("still shown")
        assert [r.getMessage() for r in caplog.records] == ["still shown"]
        caplog.clear()
        _forward_sample()  # the level is restored afterwards
        assert any("Sampling: [x]" in r.getMessage() for r in caplog.records)


def test_overlapping_quiet_blocks_leave_pymc_as_it_was(caplog: pytest.LogCaptureFixture) -> None:
    # blocks that end in another order than they began, as in threads
    first, second = quiet_pymc(), quiet_pymc()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    with caplog.at_level(logging.INFO, logger="pymc"):
        _forward_sample()
    assert any("Sampling: [x]" in r.getMessage() for r in caplog.records)


def test_step_names_the_step_and_its_duration(capsys: pytest.CaptureFixture[str]) -> None:
    with step("fit", "sampling"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "tpopk fit: sampling ..."
    assert re.fullmatch(r"tpopk fit: sampling done \(\d+\.\d s\)", lines[1])
    with step("fit", "sampling", enabled=False):
        pass
    assert capsys.readouterr().err == ""
