"""The command line: simulate writes data that validate accepts; compare's JSON schema."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import THEOPHYLLINE_UNITS
from tpopk.cli import main
from tpopk.data import read_events
from tpopk.inference import Fit

ROOT = Path(__file__).parents[1]
TRIAL = str(ROOT / "models" / "trials" / "hetrombopag_phase3_itp.toml")
CARD = str(ROOT / "models" / "generic" / "oral_1cmt_idr.toml")
LABEL_TRIAL = str(ROOT / "models" / "trials" / "itp_label_comparison.toml")


def test_simulate_writes_a_dataset_validate_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim.csv"
    args = ["simulate", "--model", CARD, "--trial", TRIAL, "--n", "3", "--seed", "4"]
    assert main([*args, "--out", str(out)]) == 0
    assert "prior predictive" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "9 subjects" in summary  # 3 arms x 3 patients
    assert "plt" in summary


def test_simulate_without_cards_uses_the_library_and_writes_mixed_units_as_mg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "label.csv"
    args = ["simulate", "--trial", LABEL_TRIAL, "--n", "2", "--seed", "1", "--out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "prior predictive of the library cards thrombopoiesis" in captured.out
    assert "tpopk simulate: itp_label_comparison: 4 arms x 2 patients done" in captured.err
    events = read_events(out, require_units=True)
    assert events.units["AMT"] == "mg"  # romiplostim's µg/kg beside the oral arms' mg
    frame = pd.read_csv(out)
    doses = frame[frame["EVID"] == 1]
    assert set(frame["AGONIST"]) == {"eltrombopag", "romiplostim", "avatrombopag", "hetrombopag"}
    # romiplostim starts at 1 µg/kg (label): the first dose is WT / 1000 mg
    first = doses[doses["AGONIST"] == "romiplostim"].groupby("ID").first()
    np.testing.assert_allclose(first["AMT"], first["WT"] / 1000, rtol=1e-6)
    assert set(doses[doses["AGONIST"] == "eltrombopag"]["AMT"]) <= {25.0, 50.0, 75.0}


def test_simulate_and_compare_refuse_a_fit_and_cards_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = ["--model", CARD, "--fit", str(tmp_path / "f.nc"), "--trial", TRIAL]
    assert main(["simulate", *both, "--out", str(tmp_path / "x.csv")]) == 2
    assert "give --fit or --model, not both" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "f.nc"), "--model", CARD, "--trial", TRIAL]) == 2
    assert "give --fit or --model, not both" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_a_design_without_library_cards_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tpopk.demo

    monkeypatch.setattr(tpopk.demo, "MODELS", tmp_path)
    assert main(["compare", "--trial", TRIAL]) == 2
    err = capsys.readouterr().err
    assert "has no card thrombopoiesis.toml, hetrombopag.toml" in err
    assert "give --model CARD" in err


def test_compare_without_a_fit_is_the_prior_predictive(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["compare", "--trial", TRIAL, "--n", "3", "--draws", "3", "--seed", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "hetrombopag_phase3_itp: prior predictive of the library cards thrombopoiesis, "
        "hetrombopag; 3 draws x 3 patients per arm"
    )
    assert "responder_week_8 (median, 90% interval)" in out
    cards = ["--model", str(ROOT / "models" / "thrombopoiesis.toml")]
    cards += ["--model", str(ROOT / "models" / "hetrombopag.toml")]
    assert main([*args, *cards, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "tpopk.compare/1"
    assert report["draws"] == 3
    week8 = report["endpoints"]["responder_week_8"]["arms"]
    assert set(week8) == {"HETROM-2.5", "HETROM-5", "placebo"}
    for arm in week8.values():
        assert 0 <= arm["lower"] <= arm["median"] <= arm["upper"] <= 1


def test_simulate_with_an_agonist_card_alone_names_the_missing_system_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hetrombopag = str(ROOT / "models" / "hetrombopag.toml")
    args = ["simulate", "--model", hetrombopag, "--trial", TRIAL, "--n", "2"]
    assert main([*args, "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "needs one system card" in err
    assert "got 0 and 1" in err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["simulate", "--model", CARD, "--trial", TRIAL, "--n", "0", "--out", "x"],
            "--n: expected an integer ≥ 1, got 0",
        ),
        (
            ["simulate", "--model", CARD, "--trial", TRIAL, "--seed", "-1", "--out", "x"],
            "--seed: expected an integer ≥ 0",
        ),
        (
            ["fit", "d.csv", "--model", CARD, "--draws", "ten", "--out", "x"],
            "--draws: expected an integer, got 'ten'",
        ),
        (
            ["fit", "d.csv", "--model", CARD, "--tune", "-5", "--out", "x"],
            "--tune: expected an integer ≥ 0",
        ),
        (["compare", "f.nc", "--trial", TRIAL, "--draws", "0"], "--draws: expected an integer ≥ 1"),
    ],
)
def test_counts_and_seeds_out_of_range_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_compare_json(prior_fit: Fit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = prior_fit.save(tmp_path / "prior.nc")
    args = ["compare", str(path), "--trial", TRIAL, "--n", "3", "--draws", "2", "--json"]
    assert main(args) == 0

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON (RFC 8259): undefined must be null")

    report = json.loads(capsys.readouterr().out, parse_constant=strict)
    assert report["schema"] == "tpopk.compare/1"
    week8 = report["endpoints"]["responder_week_8"]
    assert week8["unit"] == "fraction of patients"
    assert set(week8["arms"]) == {"HETROM-2.5", "HETROM-5", "placebo"}
    assert len(week8["contrasts"]) == 6
    for arm in week8["arms"].values():
        assert arm["lower"] <= arm["median"] <= arm["upper"]
    assert week8["equivalence"] == []  # none asked for


@pytest.mark.slow
def test_compare_json_gives_dose_equivalence(
    prior_fit: Fit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = prior_fit.save(tmp_path / "prior.nc")
    args = ["compare", str(path), "--trial", TRIAL, "--n", "3", "--draws", "2"]
    pair = ["--equivalence", "HETROM-5:HETROM-2.5"]
    assert main([*args, *pair, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "tpopk.compare/1"
    for endpoint in report["endpoints"].values():
        (entry,) = endpoint["equivalence"]
        json.dumps(entry, allow_nan=False)  # beyond-grid quantiles are null, not Infinity
        assert (entry["reference"], entry["arm"], entry["dose_unit"]) == (
            "HETROM-5",
            "HETROM-2.5",
            "mg",
        )
        assert set(entry["draws"]) == {"matched", "below_grid", "above_grid", "undefined"}
        assert sum(entry["draws"].values()) == pytest.approx(1.0)
        for dose in entry["dose"].values():
            assert dose is None or 2.5 <= dose <= 7.5  # within the phase III levels
    assert main([*args, *pair]) == 0
    assert "dose of HETROM-2.5 matching HETROM-5" in capsys.readouterr().out
    assert main([*args, "--equivalence", "HETROM-5:HETROM-9"]) == 2
    assert "no arm 'HETROM-9'" in capsys.readouterr().err


def test_compare_equivalence_needs_two_arms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", str(tmp_path / "none.nc"), "--trial", TRIAL, "--equivalence", "HETROM-5"]
    assert main(args) == 2
    assert "REFERENCE_ARM:OTHER_ARM" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_with_pathfinder_says_what_it_does_and_summary_labels_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from tpopk.data import write_events
    from tpopk.datasets import load_theophylline

    caplog.set_level(logging.INFO, logger="pymc")  # where PyMC says "Sampling: [...]"
    data = tmp_path / "theo.csv"
    write_events(load_theophylline(), data)
    out = tmp_path / "theo.nc"
    card = str(ROOT / "models" / "generic" / "oral_1cmt.toml")
    args = ["fit", str(data), "--model", card, "--out", str(out), "--method", "pathfinder"]
    assert main([*args, "--draws", "100", "--chains", "2"]) == 0
    captured = capsys.readouterr()
    assert "pathfinder approximation, not MCMC" in captured.out
    # the compile is announced on stderr, and its duration when it ends
    assert "tpopk fit: pathfinder approximation (compiles the model first" in captured.err
    assert re.search(r"tpopk fit: pathfinder .* done \(\d+\.\d s\)", captured.err)
    # the predictive draws are announced; PyMC's own "Sampling: [...]" lines are not shown
    assert "tpopk fit: log-likelihood and predictive draws done" in captured.err
    assert not [r for r in caplog.records if r.getMessage().startswith("Sampling:")]
    assert main(["summary", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "pathfinder"
    assert report["approximate"] is True
    assert report["divergences"] is None
    assert report["parameters"]["pop_cl"]["r_hat"] is None
    units = {name: row["unit"] for name, row in report["parameters"].items()}
    assert units == THEOPHYLLINE_UNITS
    assert main(["summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"pop_cl +L/h ", text)
    assert "r_hat" not in text
    assert "not MCMC" in text


def test_fit_method_and_init_are_checked_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    for option in (["--method", "vi"], ["--init", "map"]):
        with pytest.raises(SystemExit) as exited:
            main(["fit", "data.csv", "--model", CARD, "--out", "fit.nc", *option])
        assert exited.value.code == 2
        assert "invalid choice" in capsys.readouterr().err


def test_fit_choices_are_the_methods_of_fit() -> None:
    from tpopk.cli import FIT_INITS, FIT_MASS_MATRICES, FIT_METHODS
    from tpopk.inference import INITS, MASS_MATRICES, METHODS

    assert FIT_METHODS == METHODS
    assert FIT_INITS == INITS
    assert FIT_MASS_MATRICES == MASS_MATRICES


def test_fit_passes_sampler_options_to_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tpopk.inference

    seen: dict[str, object] = {}

    def record(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise tpopk.inference.FitFileError("stop")

    monkeypatch.setattr(tpopk.inference, "fit", record)
    out = str(tmp_path / "fit.nc")
    args = ["fit", THEOPHYLLINE, "--model", ORAL, "--out", out]
    main([*args, "--target-accept", "0.95", "--max-treedepth", "6", "--mass-matrix", "low_rank"])
    assert (seen["target_accept"], seen["max_treedepth"], seen["mass_matrix"]) == (
        0.95,
        6,
        "low_rank",
    )
    main(args)
    assert (seen["target_accept"], seen["max_treedepth"], seen["mass_matrix"]) == (0.9, 10, "diag")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--target-accept", "1.2"], "expected a number between 0 and 1, got 1.2"),
        (["--target-accept", "high"], "expected a number, got 'high'"),
        (["--max-treedepth", "0"], "expected an integer ≥ 1, got 0"),
        (["--mass-matrix", "dense"], "invalid choice"),
    ],
)
def test_bad_sampler_options_are_usage_errors(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["fit", "data.csv", "--model", CARD, "--out", "fit.nc", *option])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


THEOPHYLLINE = str(ROOT / "src" / "tpopk" / "datasets" / "theo_sd.csv")
ORAL = str(ROOT / "models" / "generic" / "oral_1cmt.toml")


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("fit.ncc", "expected a file ending in .nc or .zarr"),
        ("fit", "expected a file ending in .nc or .zarr"),
        ("folder.nc", "is a folder"),
        ("locked/sub/fit.nc", "not a writable folder"),
    ],
)
def test_fit_out_is_checked_before_sampling(
    out: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import os

    import tpopk.inference

    (tmp_path / "folder.nc").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if out.startswith("locked") and os.access(locked, os.W_OK):
        pytest.skip("running as a user who can write anywhere")

    def no_sampling(*args: object, **kwargs: object) -> None:
        raise AssertionError("sampled before checking --out")

    monkeypatch.setattr(tpopk.inference, "fit", no_sampling)
    args = ["fit", THEOPHYLLINE, "--model", ORAL, "--out", str(tmp_path / out)]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_ctrl_c_during_sampling_exits_saying_nothing_was_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    import os
    import signal

    import tpopk.inference

    def interrupted_sampling(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C in the terminal
        raise AssertionError("Ctrl-C did not stop the command")

    monkeypatch.setattr(tpopk.inference, "fit", interrupted_sampling)
    # the handler found, not default_int_handler: a process started in the background
    # (nohup, `cmd &` in a script, some CI runners) inherits SIGINT ignored
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "fit.nc"
    assert main(["fit", THEOPHYLLINE, "--model", ORAL, "--out", str(out)]) == 130
    assert "interrupted; nothing was written" in capsys.readouterr().err
    assert not out.exists()
    assert signal.getsignal(signal.SIGINT) is before


def test_closed_output_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    # the reader closes the pipe before tpopk writes, as `tpopk ... | head -0` does
    code = f"import sys; from tpopk.cli import main; sys.exit(main(['validate', {THEOPHYLLINE!r}]))"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from tpopk import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"tpopk {__version__}"


def test_every_option_has_help_and_shows_its_default() -> None:
    import argparse

    from tpopk.cli import _parser

    parser = _parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in {"tpopk": parser, **commands.choices}.items():
        text = sub.format_help()
        for action in sub._actions:
            assert action.help, f"{name} {action.dest} has no help"
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                assert f"(default: {action.default})" in text, f"{name} {action.dest}"
