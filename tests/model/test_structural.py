"""Predictions: the NumPy simulation path equals the PyMC graph, units convert exactly."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytensor
import pytest

from tpopk.datasets import load_theophylline, load_wbc_sim
from tpopk.model import CardError, build_model, concentration_factor, load_card
from tpopk.model.build import arrange_study
from tpopk.model.structural import concentration_at, response_at

MODELS = Path(__file__).parents[2] / "models"


@pytest.mark.parametrize(
    ("dose", "conc", "factor"),
    [
        ("mg", "mg/L", 1.0),
        ("mg", "ng/mL", 1e3),
        ("µg", "pg/mL", 1e3),
        ("mg", "µg/mL", 1.0),
        ("µmol", "µmol/L", 1.0),
        ("µmol", "nmol/L", 1e3),
        ("ng", "ng/mL", 1e-3),
    ],
)
def test_concentration_factor(dose: str, conc: str, factor: float) -> None:
    assert concentration_factor(dose, conc) == pytest.approx(factor, rel=1e-12)


def test_mass_dose_cannot_predict_molar_concentration() -> None:
    with pytest.raises(CardError, match="molecular weight"):
        concentration_factor("mg", "nmol/L")


def _individual_values(model, names):  # type: ignore[no-untyped-def]
    point = model.initial_point()
    point = {k: v + 0.05 * np.arange(v.size).reshape(v.shape) for k, v in point.items()}
    # Deterministics are graphs of the random variables; evaluate them at the value variables.
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    fn = pytensor.function(model.value_vars, outputs, on_unused_input="ignore", mode="FAST_COMPILE")
    values = fn(*[point[v.name] for v in model.value_vars])
    return dict(zip(names, values, strict=True))


def test_numpy_response_equals_the_model_graph() -> None:
    card = load_card(MODELS / "examples" / "paclitaxel_wbc.toml")
    events = load_wbc_sim()
    model = build_model(card, events)
    values = _individual_values(model, ["circ0", "mtt", "slope", "gamma", "ipred_wbc"])
    study = arrange_study(card, events)
    arrays = events.subject_arrays()
    covariates = events.covariates
    params = {
        "circ0": values["circ0"],
        "mtt": values["mtt"],
        "slope": values["slope"],
        "gamma": values["gamma"],
        "q": 204.0,
        "cl": covariates["CLI"].to_numpy(float),
        "v": covariates["V1I"].to_numpy(float),
        "v2": covariates["V2I"].to_numpy(float),
    }
    simulated = response_at(
        "friberg",
        [(study.drugs[0], params)],
        params,
        arrays.obs_subject,
        arrays.obs_time,
        len(arrays.subject_ids),
        np,
    )
    np.testing.assert_allclose(simulated, values["ipred_wbc"], rtol=1e-10)


def test_numpy_concentration_equals_the_model_graph() -> None:
    card = load_card(MODELS / "generic" / "oral_1cmt.toml")
    events = load_theophylline()
    model = build_model(card, events)
    values = _individual_values(model, ["ka", "cl", "v", "ipred_conc"])
    drug = arrange_study(card, events).drugs[0]
    arrays = events.subject_arrays()
    conc = concentration_at(
        drug,
        {k: values[k] for k in ("ka", "cl", "v")},
        arrays.obs_subject,
        arrays.obs_time,
        "mg/L",
        np,
    )
    np.testing.assert_allclose(conc, values["ipred_conc"], rtol=1e-12)


@pytest.mark.parametrize(
    ("card", "interval"),
    [
        # two-compartment dual absorption: ~40 s, the others a few seconds
        pytest.param("eltrombopag", 24.0, marks=pytest.mark.slow),
        ("hetrombopag", 24.0),
        ("romiplostim", 168.0),
    ],
)
def test_doses_on_a_lattice_superpose_as_the_general_closed_form(card: str, interval: float):
    """The shortcut for lattice doses equals the full superposition, in NumPy (trial
    simulation) and in the PyMC graph (fits), gradient included."""
    from tpopk.model.structural import Dosing, Drug
    from tpopk.pk import PK_MODELS, concentration

    drug_card = load_card(MODELS / f"{card}.toml")
    rng = np.random.default_rng(4)
    n, slots = 5, 30
    pk = PK_MODELS[str(drug_card.structure.pk)]
    params = {
        spec.name: np.exp(rng.normal(np.log(spec.default or 1.0), 0.3, n))
        for spec in pk.parameters
        if spec.name != "n_transit"
    }
    params |= {"ka": rng.uniform(0.2, 2.0, n), "cl": rng.uniform(0.5, 8.0, n)}
    params = {k: v for k, v in params.items() if k in pk.parameter_names}
    time = np.broadcast_to(interval * np.arange(slots), (n, slots)).copy()
    amount = rng.choice([0.0, 1.0, 2.5], size=(n, slots))  # gaps and level changes
    zeros = np.zeros((n, slots))
    dosing = Dosing(time, amount, zeros, zeros.astype(np.int64), zeros, zeros, amount > 0)
    drug = Drug(drug_card, np.arange(n), dosing)
    # stage times: graded after each dose, uneven, some before the first dose
    t = np.sort(rng.uniform(0.0, interval * slots, (n, 400)), axis=1)
    t[:, ::3] = (interval * rng.integers(0, slots, (n, 134)))[:, : t[:, ::3].shape[1]] + 0.5
    t = np.sort(t, axis=1)
    rows = np.arange(n)[:, None]
    fast = concentration_at(drug, params, rows, t, "ng/mL", np)
    individual = {k: v[:, None] for k, v in params.items()}
    full = concentration(
        pk,
        individual,
        time[:, None],
        amount[:, None],
        zeros[:, None],
        zeros[:, None],
        zeros[:, None],
        t,
        xp=np,
    ) * concentration_factor(drug_card.units.dose, "ng/mL")
    atol = 1e-14 * np.abs(full).max()
    np.testing.assert_allclose(fast, full, rtol=1e-10, atol=atol)
    # The same shortcut in the PyMC graph (what a fit evaluates), with its gradient.
    import pytensor
    import pytensor.tensor as pt

    symbols = {k: pt.vector(k) for k in params}
    graph = concentration_at(drug, symbols, rows, t, "ng/mL", pt)
    value = pytensor.function(list(symbols.values()), graph)(*params.values())
    np.testing.assert_allclose(value, full, rtol=1e-10, atol=atol)
    general = concentration(
        pk,
        {k: v[:, None] for k, v in symbols.items()},
        *(pt.as_tensor(x[:, None]) for x in (time, amount, zeros, zeros, zeros)),
        pt.as_tensor(t),
        xp=pt,
    )
    weights = rng.normal(size=t.shape)
    grads = [
        pytensor.function(
            list(symbols.values()), pt.grad((g * weights).sum(), list(symbols.values()))
        )(*params.values())
        for g in (graph, general * concentration_factor(drug_card.units.dose, "ng/mL"))
    ]
    for lattice, reference in zip(*grads, strict=True):
        np.testing.assert_allclose(
            lattice, reference, rtol=1e-8, atol=1e-12 * np.abs(reference).max()
        )


def test_doses_after_every_requested_time_add_nothing() -> None:
    """A lattice of daily doses that goes on past the last time asked for (PK sampled in
    the first days of a longer course) superposes as the general closed form."""
    from tpopk.model.structural import Dosing, Drug
    from tpopk.pk import PK_MODELS, concentration

    card = load_card(MODELS / "generic" / "oral_1cmt.toml")
    n, slots = 2, 10
    time = np.broadcast_to(24.0 * np.arange(slots), (n, slots)).copy()
    amount, zeros = np.full((n, slots), 50.0), np.zeros((n, slots))
    dosing = Dosing(time, amount, zeros, zeros.astype(np.int64), zeros, zeros, amount > 0)
    drug = Drug(card, np.arange(n), dosing)
    params = {"ka": np.array([0.7, 1.4]), "cl": np.array([3.0, 6.0]), "v": np.array([30.0, 50.0])}
    rows, t = np.array([0, 0, 1, 1]), np.array([1.0, 30.0, 2.0, 50.0])  # days 1-3 only
    fast = concentration_at(drug, params, rows, t, "mg/L", np)
    pk = PK_MODELS["oral_1cmt"]
    full = concentration(
        pk,
        {k: v[rows][:, None] for k, v in params.items()},
        *(x[rows][:, None] for x in (time, amount, zeros, zeros.astype(np.int64), zeros)),
        t[:, None],
        xp=np,
    )
    np.testing.assert_allclose(fast, full.ravel(), rtol=1e-12)


def test_observations_and_stage_times_share_one_lattice_evaluation() -> None:
    """PK observations ([N] rows and times) and solver stage times ([S, G]) asked for
    together give what each gives alone through the general closed form."""
    from tpopk.model.structural import Dosing, Drug, concentrations_at
    from tpopk.pk import PK_MODELS, concentration

    drug_card = load_card(MODELS / "eltrombopag.toml")
    pk = PK_MODELS[str(drug_card.structure.pk)]
    rng = np.random.default_rng(7)
    n, slots = 4, 20
    params = {
        spec.name: np.exp(rng.normal(np.log(spec.default or 1.0), 0.3, n)) for spec in pk.parameters
    }
    time = np.broadcast_to(24.0 * np.arange(slots), (n, slots)).copy()
    amount = rng.choice([0.0, 25.0, 50.0], size=(n, slots))
    zeros = np.zeros((n, slots))
    dosing = Dosing(time, amount, zeros, zeros.astype(np.int64), zeros, zeros, amount > 0)
    drug = Drug(drug_card, np.arange(n), dosing)
    stages = np.sort(rng.uniform(-5.0, 24.0 * slots, (n, 60)), axis=1)
    obs_rows = rng.integers(0, n, 25)  # uneven numbers of observations per subject
    obs_time = rng.uniform(0.0, 24.0 * slots, 25)
    requests = [(np.arange(n)[:, None], stages, "ng/mL"), (obs_rows, obs_time, "mg/L")]

    def general(rows, t, unit):  # type: ignore[no-untyped-def]
        rows = np.broadcast_to(rows, np.shape(t))
        doses = (x[rows] for x in (time, amount, zeros, zeros, zeros))
        individual = {k: v[rows] for k, v in params.items()}
        value = concentration(pk, individual, *doses, t, xp=np)
        return value * concentration_factor(drug_card.units.dose, unit)

    import pytensor
    import pytensor.tensor as pt

    symbols = {k: pt.vector(k) for k in params}
    graph = concentrations_at(drug, symbols, requests, pt)
    in_graph = pytensor.function(list(symbols.values()), graph)(*params.values())
    for request, fast, symbolic in zip(
        requests, concentrations_at(drug, params, requests, np), in_graph, strict=True
    ):
        reference = general(*request)
        assert reference.shape == np.shape(request[1])
        assert np.abs(reference).max() > 0
        atol = 1e-14 * np.abs(reference).max()
        np.testing.assert_allclose(fast, reference, rtol=1e-10, atol=atol)
        np.testing.assert_allclose(symbolic, reference, rtol=1e-10, atol=atol)


def test_fixed_parameters_compute_in_double_precision() -> None:
    # every value below is exact in float32: a float32 constant would round every
    # rate constant derived from them (relative error ~1e-5 here)
    fixed = {"ka": 1.5, "cl": 2.75, "v": 30.5, "q": 4.25, "v2": 60.0, "tlag": 0.25}
    table = load_card(MODELS / "generic" / "oral_2cmt.toml").to_toml_dict()
    for name, value in fixed.items():
        spec = table["parameters"][name]
        spec.pop("prior"), spec.pop("iiv", None)
        spec["value"] = value
    card = load_card(table)
    events = load_theophylline()
    model = build_model(card, events)
    values = _individual_values(model, ["ipred_conc"])
    arrays = events.subject_arrays()
    drug = arrange_study(card, events).drugs[0]
    conc = concentration_at(drug, fixed, arrays.obs_subject, arrays.obs_time, "mg/L", np)
    assert values["ipred_conc"].dtype == np.float64
    np.testing.assert_allclose(values["ipred_conc"], conc, rtol=1e-13, atol=1e-300)


def test_concentration_in_a_compartment_the_model_lacks_is_refused() -> None:
    from tpopk.data import read_events

    frame = load_theophylline().frame
    frame.loc[frame.index[frame["EVID"] == 0][3], "CMT"] = 7
    events = read_events(frame, units=load_theophylline().units.as_dict())
    with pytest.raises(CardError, match=r"central compartment, CMT 2 .* in CMT \[7\]"):
        build_model(load_card(MODELS / "generic" / "oral_1cmt.toml"), events)


@pytest.mark.slow  # 15 s warm, 46 s with a cold PyTensor cache
def test_mixed_iv_and_oral_dataset_builds_and_its_graph_equals_numpy() -> None:
    """IV doses into CMT 2 beside oral doses into CMT 1: the fitted graph and its gradient."""
    from tpopk.data import read_events
    from tpopk.pk import PK_MODELS, concentration

    theophylline = load_theophylline()
    frame = theophylline.frame
    iv = frame[(frame["EVID"] == 1) & (frame["ID"] % 2 == 0)].assign(TIME=2.0, AMT=50.0, CMT=2)
    iv = iv.assign(RATE=100.0)  # a 30 min infusion into the central compartment
    frame = pd.concat([frame, iv]).sort_values(["ID", "TIME"], kind="stable")
    events = read_events(frame.reset_index(drop=True), units=theophylline.units.as_dict())
    card = load_card(MODELS / "generic" / "oral_1cmt.toml")
    model = build_model(card, events)
    values = _individual_values(model, ["ka", "cl", "v", "ipred_conc"])
    arrays = events.subject_arrays()
    subject = arrays.obs_subject
    # the same subjects by superposition of the two models: oral doses, then IV doses
    oral_only = np.where(arrays.dose_cmt == 1, arrays.dose_amt, 0.0)
    iv_only = np.where(arrays.dose_cmt == 2, arrays.dose_amt, 0.0)
    rates = np.where(arrays.dose_cmt == 2, arrays.dose_rate, 0.0)
    zeros = np.zeros(arrays.dose_amt.shape)
    oral = concentration(
        PK_MODELS["oral_1cmt"],
        {k: values[k][subject] for k in ("ka", "cl", "v")},
        *(a[subject] for a in (arrays.dose_time, oral_only, zeros, zeros, zeros)),
        arrays.obs_time,
    )
    intravenous = concentration(
        PK_MODELS["iv_1cmt"],
        {k: values[k][subject] for k in ("cl", "v")},
        *(a[subject] for a in (arrays.dose_time, iv_only, rates, zeros, zeros)),
        arrays.obs_time,
    )
    assert np.any(intravenous > 0.0)
    np.testing.assert_allclose(values["ipred_conc"], oral + intravenous, rtol=1e-12)
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    assert all(np.isfinite(g).all() for g in model.compile_dlogp()(point))
