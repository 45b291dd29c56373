"""The report's figures keep their text apart and inside the image, however many panels."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from tpopk import diagnostics
from tpopk.report.comparison import plot_contrasts

from . import layout
from .conftest import comparison_tree
from .layout import clipped_text, drawn_text, overlapping_text

#: Parameter names as a two-agonist study fit has them: long, with agonists and levels.
LONG_NAMES = ["ka", "cl", "v", "tplt_romiplostim", "plt0", "slope_eltrombopag", "emax_x", "tp"]


def study_posterior() -> xr.DataTree:
    """Population draws of many parameters, some vectors, some with long names."""
    rng = np.random.default_rng(0)
    scalars = ["pop_ka", "omega_ka", "pop_cl", "omega_cl", "beta_cl_WT", "sigma_add_conc"]
    scalars += ["sigma_log_plt_ITP", "tau_tp"]
    posterior = {name: (("chain", "draw"), rng.normal(size=(4, 200))) for name in scalars}
    posterior["pop_tp_agonist"] = (("chain", "draw", "agonist"), rng.normal(size=(4, 200, 3)))
    posterior["beta_cl_DISEASE"] = (
        ("chain", "draw", "disease_level"),
        rng.normal(size=(4, 200, 2)),
    )
    coords = {"agonist": ["romiplostim", "eltrombopag", "avatrombopag"]}
    coords |= {"disease_level": ["ITP", "CLD"]}
    return xr.DataTree.from_dict({"posterior": xr.Dataset(posterior, coords=coords)})


def check_layout(figure) -> None:  # type: ignore[no-untyped-def]
    assert overlapping_text(figure) == []
    assert clipped_text(figure) == []
    plt.close(figure)


def test_overlap_check_finds_colliding_and_clipped_text() -> None:
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(3, 2))
    top.set_xlabel("a label long enough")
    top.set_title("x" * 80)  # wider than the figure
    bottom.set_title("a title under the label")
    found = overlapping_text(figure)
    # the top panel's ticks and label reach into the bottom panel, whose title into the top
    assert ("a label long enough", "panel 1") in found
    assert ("a title under the label", "panel 0") in found
    assert ("0.0", "panel 1") in found
    assert "x" * 80 not in clipped_text(figure)  # the report's images grow to hold it
    with matplotlib.rc_context({"savefig.bbox": "standard"}), pytest.MonkeyPatch.context() as m:
        m.setitem(layout.SAVEFIG, "bbox_inches", None)  # a fixed-size image cuts it off
        assert "x" * 80 in clipped_text(figure)
    texts, image = drawn_text(figure)
    assert image.width > 0
    assert all(box.width > 0 for _, box in texts)
    plt.close(figure)


def test_rank_plots_of_a_study_fit() -> None:
    figure = diagnostics.plot_convergence(study_posterior()).viz["figure"].item()
    xlabels = [axes.get_xlabel() for axes in figure.axes if axes.get_xlabel()]
    assert xlabels == ["Fractional ranks"]
    check_layout(figure)


def test_eta_shrinkage_titles_of_many_parameters() -> None:
    rng = np.random.default_rng(1)
    shrinkage = xr.Dataset(
        {
            "eta_mean": (("parameter", "subject"), rng.normal(0, 0.3, (8, 40))),
            "omega": ("parameter", np.full(8, 0.3)),
            "shrinkage": ("parameter", rng.uniform(0, 1, 8)),
        },
        coords={"parameter": LONG_NAMES},
    )
    check_layout(diagnostics.plot_eta_shrinkage(shrinkage).viz["figure"].item())


def test_forest_plot_of_the_contrasts() -> None:
    tree = comparison_tree()
    figure = plot_contrasts(tree)
    assert figure is not None
    contrasts = tree["contrasts"].to_dataset()
    first = (contrasts["arm"] == "eltrombopag").values  # each pair once: eltrombopag − placebo
    labels = []
    for axes, name in zip(figure.axes, ["responder_week_6", "time_to_response"], strict=True):
        unit = tree["draws"][name].attrs["units"]
        assert axes.get_xlabel() == f"difference in {name} ({unit})"
        difference = contrasts[f"difference_{name}"].isel(pair=first)
        (point,) = axes.lines[0].get_xdata()
        assert point == pytest.approx(float(difference.sel(stat="median").item()))
        (segment,) = axes.collections[0].get_segments()
        interval = [float(difference.sel(stat=s).item()) for s in ("lower", "upper")]
        assert segment[:, 0] == pytest.approx(interval)
        labels += [label.get_text() for label in axes.get_yticklabels()]
    p_better = float(contrasts["p_better_time_to_response"].isel(pair=first).item())
    assert labels[1] == f"eltrombopag − placebo  (P better {p_better:.2f})"
    check_layout(figure)


def test_no_forest_plot_without_contrasts() -> None:
    tree = comparison_tree()
    assert plot_contrasts(xr.DataTree.from_dict({"summary": tree["summary"].to_dataset()})) is None
    one_arm = tree["draws"].to_dataset().isel(arm=[0])
    from tpopk.simulate.comparison import contrasts

    lonely = xr.DataTree.from_dict({"contrasts": contrasts(one_arm, {}, 0.9)})
    assert plot_contrasts(lonely) is None
