"""Model cards: valid cards load; every kind of broken card fails with a clear message."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymc_extras.prior import Prior

from tpopk.model import CardError, load_card

MODELS = Path(__file__).parents[2] / "models"

VALID = """
name = "t"
[structure]
pk = "oral_1cmt"
[parameters.ka]
unit = "1/h"
prior = { dist = "LogNormal", mu = 0.0, sigma = 1.0 }
source = "test"
[parameters.cl]
unit = "L/h"
prior = { dist = "LogNormal", mu = 1.0, sigma = 1.0 }
iiv = { dist = "HalfNormal", sigma = 0.5 }
source = "test"
covariates = [{ covariate = "WT", effect = "power", reference = 70, coefficient = 0.75 }]
[parameters.v]
unit = "L"
prior = { dist = "LogNormal", mu = 3.0, sigma = 1.0 }
source = "test"
[residual.conc]
error = "additive"
sigma_add = { dist = "HalfNormal", sigma = 1.0 }
"""


@pytest.mark.parametrize("path", sorted(MODELS.glob("generic/*.toml")), ids=lambda p: p.stem)
def test_generic_cards_load(path: Path) -> None:
    card = load_card(path)
    assert card.name == path.stem
    assert all(isinstance(p.prior, Prior) for p in card.parameters.values() if p.value is None)


def test_card_round_trips_through_its_dict() -> None:
    card = load_card(VALID)
    again = load_card(card.to_toml_dict())
    assert again == card
    assert again.parameters["cl"].prior.parameters == {"mu": 1.0, "sigma": 1.0}
    assert again.parameters["cl"].covariates[0].coefficient == 0.75


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('pk = "oral_1cmt"', 'pk = "oral_9cmt"', "not a known PK model"),
        ('dist = "LogNormal", mu = 0.0', 'dist = "LogNorml", mu = 0.0', "LogNorml"),
        ("mu = 0.0, sigma = 1.0 }", "mu = 0.0, sgma = 1.0 }", "sgma"),
        ('unit = "L/h"', 'unit = "mL/min"', "expects 'L/h'"),
        ('[parameters.v]\nunit = "L"', '[parameters.vv]\nunit = "L"', "needs parameters ['v']"),
        ('error = "additive"', 'error = "proportional"', "needs exactly ['sigma_prop']"),
        ('error = "additive"', 'error = "gaussian"', "residual.conc.error"),
        ('source = "test"\ncovariates', 'source = ""\ncovariates', "parameters.cl.source"),
        ("reference = 70", "reference = -70", "positive 'reference'"),
        ('effect = "power"', 'effect = "categorical"', "non-reference 'levels'"),
        ("[residual.conc]", "extra_key = 1\n[residual.conc]", "extra_key"),
    ],
)
def test_broken_card_names_the_problem(old: str, new: str, message: str) -> None:
    assert old in VALID
    with pytest.raises(CardError, match="invalid model card") as err:
        load_card(VALID.replace(old, new, 1))
    assert message in str(err.value)


def test_prior_and_value_are_exclusive() -> None:
    text = VALID.replace(
        'prior = { dist = "LogNormal", mu = 3.0, sigma = 1.0 }',
        'prior = { dist = "LogNormal", mu = 3.0, sigma = 1.0 }\nvalue = 20.0',
    )
    with pytest.raises(CardError, match="exactly one of 'prior'"):
        load_card(text)


def test_not_toml_and_missing_file() -> None:
    with pytest.raises(CardError, match="not valid TOML"):
        load_card("name = ")
    with pytest.raises(CardError, match="does not exist"):
        load_card(Path("no/such/card.toml"))


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.toml")), ids=lambda p: p.stem)
def test_library_card_round_trips_through_json(path: Path) -> None:
    # Fit.save stores the cards as JSON; vector priors (categorical effects) included
    import json

    card = load_card(path)
    assert load_card(json.loads(json.dumps(card.to_toml_dict()))) == card


CENTERED_CL = 'iiv = { dist = "HalfNormal", sigma = 0.5 }\ncentered = true'


def test_centered_iiv_samples_eta_directly() -> None:
    import pandas as pd
    import pymc as pm

    from tpopk.model.parameters import individual_parameters

    old = 'iiv = { dist = "HalfNormal", sigma = 0.5 }'
    card = load_card(VALID.replace(old, CENTERED_CL, 1))
    with pm.Model(coords={"subject": [1, 2, 3]}) as model:
        individual_parameters(card.parameters, pd.DataFrame({"WT": [60.0, 70.0, 80.0]}))
    assert "eta_cl" in {v.name for v in model.free_RVs}
    assert "z_cl" not in model.named_vars
    # the same prior as the non-centred form: eta_cl / omega_cl is standard normal
    eta, omega = pm.draw([model["eta_cl"], model["omega_cl"]], draws=4000, random_seed=1)
    assert abs(float((eta / omega[:, None]).std()) - 1.0) < 0.05


def test_centered_needs_iiv() -> None:
    text = VALID.replace('unit = "L"\n', 'unit = "L"\ncentered = true\n', 1)
    with pytest.raises(CardError, match="'centered'"):
        load_card(text)


IIV_BY_CL = (
    'iiv = { dist = "HalfNormal", sigma = 0.5 }\n'
    'iiv_by = { covariate = "DISEASE", levels = { ITP = { dist = "HalfNormal", sigma = 2.0 } }, '
    'source = "test" }'
)


def _iiv_by_card(extra: str = "", *, centered: bool = False) -> str:
    old = 'iiv = { dist = "HalfNormal", sigma = 0.5 }'
    return VALID.replace(old, IIV_BY_CL + ("\ncentered = true" if centered else "") + extra, 1)


@pytest.mark.parametrize("centered", [False, True], ids=["non-centred", "centred"])
def test_iiv_by_gives_each_level_its_own_omega(centered: bool) -> None:
    import numpy as np
    import pandas as pd
    import pymc as pm

    from tpopk.model.parameters import individual_parameters

    card = load_card(_iiv_by_card(centered=centered))
    assert load_card(card.to_toml_dict()) == card
    disease = ["HV", "ITP", "HV", "ITP"]
    frame = pd.DataFrame({"WT": [70.0] * 4, "DISEASE": disease})
    with pm.Model(coords={"subject": [1, 2, 3, 4]}) as model:
        individual_parameters(card.parameters, frame)
    assert {"omega_cl", "omega_cl_ITP"} <= {v.name for v in model.free_RVs}
    sd, omega, omega_itp, eta = pm.draw(
        [model["iiv_cl"], model["omega_cl"], model["omega_cl_ITP"], model["eta_cl"]],
        draws=4000,
        random_seed=2,
    )
    is_itp = np.array(disease) == "ITP"
    np.testing.assert_array_equal(sd[:, ~is_itp], np.repeat(omega[:, None], 2, axis=1))
    np.testing.assert_array_equal(sd[:, is_itp], np.repeat(omega_itp[:, None], 2, axis=1))
    # each subject's eta / its own omega is standard normal, whichever level it is at
    assert abs(float((eta / sd).std()) - 1.0) < 0.05
    # and the ITP subjects' etas are wider (HalfNormal(2) vs HalfNormal(0.5) omegas)
    assert np.abs(eta[:, is_itp]).mean() > 3 * np.abs(eta[:, ~is_itp]).mean()


def test_iiv_by_without_its_covariate_in_the_data_names_it() -> None:
    import pandas as pd
    import pymc as pm

    from tpopk.model.parameters import individual_parameters

    card = load_card(_iiv_by_card())
    with (
        pm.Model(coords={"subject": [1]}),
        pytest.raises(CardError, match="'iiv_by' covariate 'DISEASE'"),
    ):
        individual_parameters(card.parameters, pd.DataFrame({"WT": [70.0]}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # the other subjects need the parameter's own iiv
        (
            _iiv_by_card().replace('iiv = { dist = "HalfNormal", sigma = 0.5 }\n', "", 1),
            "need the parameter's 'iiv' prior",
        ),
        (
            _iiv_by_card().replace(
                'levels = { ITP = { dist = "HalfNormal", sigma = 2.0 } }', "levels = {}", 1
            ),
            "at least one level",
        ),
        # a level the parameter's categorical effect on the same covariate does not know
        (
            _iiv_by_card().replace(
                "coefficient = 0.75 }]",
                'coefficient = 0.75 }, { covariate = "DISEASE", effect = "categorical", '
                'reference = "HV", levels = ["CLD"], coefficient = 0.1 }]',
                1,
            ),
            "'iiv_by' levels ['ITP'] are not levels of covariate 'DISEASE'",
        ),
    ],
    ids=["no-iiv", "no-levels", "unknown-level"],
)
def test_broken_iiv_by_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(CardError, match="invalid model card") as err:
        load_card(text)
    assert message in str(err.value)


LN_V = '{ dist = "LogNormal", mu = 3.0, sigma = 1.0 }'
HN_OMEGA = '{ dist = "HalfNormal", sigma = 0.5 }'
HN_SIGMA = '{ dist = "HalfNormal", sigma = 1.0 }'


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # impossible parameters: negative or zero scale, nan, inf, empty support
        ("mu = 3.0, sigma = 1.0", "mu = 3.0, sigma = -1.0", "parameters.v"),
        ("mu = 3.0, sigma = 1.0", "mu = 3.0, sigma = 0.0", "'sigma' = 0.0; expected > 0"),
        ("mu = 3.0, sigma = 1.0", "mu = nan, sigma = 1.0", "'mu' is nan"),
        ("mu = 3.0, sigma = 1.0", "mu = 3.0, sigma = inf", "'sigma' is inf"),
        (LN_V, '{ dist = "Uniform", lower = 9.0, upper = 1.0 }', "empty"),
        (LN_V, '{ dist = "Gamma", alpha = 2.0, beta = -1.0 }', "'beta' = -1.0"),
        (HN_SIGMA, '{ dist = "HalfNormal", sigma = -1.0 }', "residual.conc"),
        (HN_OMEGA, '{ dist = "HalfNormal", sigma = nan }', "parameters.cl"),
        ("coefficient = 0.75", "coefficient = nan", "parameters.cl.covariates"),
        (
            "coefficient = 0.75",
            'coefficient = { dist = "Normal", mu = 0.75, sigma = -0.1 }',
            "'sigma' = -0.1",
        ),
        ("reference = 70", "reference = inf", "parameters.cl.covariates"),
        (LN_V, '{ dist = "LKJCorr", n = 2, eta = 1.0 }', "univariate"),
        # support: typical values are positive, SDs never negative
        (LN_V, '{ dist = "Normal", mu = 3.0, sigma = 1.0 }', "typical value is positive"),
        (HN_OMEGA, '{ dist = "Normal", mu = 0.5, sigma = 0.1 }', "must not go below 0"),
        (HN_SIGMA, '{ dist = "Normal", mu = 1.0, sigma = 0.1 }', "sigma_add"),
        # a Beta (bounded) typical value with log-normal IIV or a covariate leaves [0, 1]
        (
            '{ dist = "LogNormal", mu = 1.0, sigma = 1.0 }',
            '{ dist = "Beta", alpha = 2.0, beta = 2.0 }',
            "bounds the parameter",
        ),
    ],
)
def test_impossible_prior_is_refused_at_load(old: str, new: str, message: str) -> None:
    assert old in VALID
    with pytest.raises(CardError, match="invalid model card") as err:
        load_card(VALID.replace(old, new, 1))
    assert message in str(err.value)


def test_bounded_prior_without_variability_is_accepted() -> None:
    # a Beta fraction stays in [0, 1] as long as nothing multiplies it
    beta = '{ dist = "Beta", alpha = 2, beta = 5 }'
    card = load_card(VALID.replace('{ dist = "LogNormal", mu = 0.0, sigma = 1.0 }', beta))
    assert card.parameters["ka"].prior.distribution == "Beta"


def test_card_file_that_is_not_toml_text(tmp_path: Path) -> None:
    binary = tmp_path / "card.toml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(CardError, match="not a text file"):
        load_card(binary)
    with pytest.raises(CardError, match="not a text file"):
        load_card(str(binary))
    (tmp_path / "mine.toml").write_text(VALID)
    # a path without '.toml' is a path, not TOML text, and the likely file is named
    with pytest.raises(CardError, match=r"does not exist \(did you mean '.*mine.toml'\?\)"):
        load_card(str(tmp_path / "mine"))
    with pytest.raises(CardError, match="is a folder"):
        load_card(str(tmp_path))
    assert load_card(str(tmp_path / "mine.toml")).name == "t"


PER_KG_APGAR = """
name = "per_kg"
[structure]
pk = "iv_1cmt"
[parameters.cl]
unit = "L/h/kg"
per = "WT"
prior = { dist = "LogNormal", mu = -5.0, sigma = 1.0 }
source = "test"
[parameters.v]
unit = "L/kg"
per = "WT"
prior = { dist = "LogNormal", mu = 0.0, sigma = 1.0 }
source = "test"
covariates = [{ covariate = "APGR", effect = "threshold", reference = 5, coefficient = 0.25 }]
[residual.conc]
error = "proportional"
sigma_prop = { dist = "HalfNormal", sigma = 0.5 }
"""


def _typical_values(text: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    import pymc as pm

    from tpopk.model.parameters import individual_parameters

    card = load_card(text)
    with pm.Model(coords={"subject": list(range(len(frame)))}) as model:
        values = individual_parameters(card.parameters, frame)
    # individual value over its typical value, one prior draw
    cl, pop_cl, v, pop_v = pm.draw(
        [values["cl"], model["pop_cl"], values["v"], model["pop_v"]], random_seed=1
    )
    return {"cl": cl / pop_cl, "v": v / pop_v}


def test_per_kg_typical_value_and_apgar_threshold_scale_each_subject() -> None:
    card = load_card(PER_KG_APGAR)
    assert load_card(card.to_toml_dict()) == card
    frame = pd.DataFrame({"WT": [1.4, 0.9, 3.0], "APGR": [7.0, 4.0, 5.0]})
    values = _typical_values(PER_KG_APGAR, frame)
    np.testing.assert_allclose(values["cl"], frame["WT"], rtol=1e-12)
    # 1 + 0.25 only where APGR < 5 (NONMEM's APGR.LT.5): not at 5 itself
    np.testing.assert_allclose(values["v"], frame["WT"] * np.array([1.0, 1.25, 1.0]), rtol=1e-12)
    above = PER_KG_APGAR.replace("coefficient = 0.25 }", 'coefficient = 0.25, side = "above" }')
    values = _typical_values(above, frame)
    np.testing.assert_allclose(values["v"], frame["WT"] * np.array([1.25, 1.0, 1.0]), rtol=1e-12)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('unit = "L/h/kg"', 'unit = "L/h"', "per WT: its unit is the structure's 'L/h' per"),
        ("coefficient = 0.25 }", "coefficient = -1.5 }", "must stay above -1"),
        (
            "coefficient = 0.25 }",
            'coefficient = { dist = "Normal", mu = 0.0, sigma = 1.0 } }',
            "must stay above -1",
        ),
        ("reference = 5,", 'reference = "5",', "numeric 'reference'"),
        ('effect = "threshold"', 'effect = "linear"', "other"),
        ("coefficient = 0.25 }", 'coefficient = 0.25, side = "left" }', "side"),
    ],
)
def test_broken_per_or_threshold_names_the_problem(old: str, new: str, message: str) -> None:
    assert old in PER_KG_APGAR
    text = PER_KG_APGAR.replace(old, new, 1)
    if message == "other":  # 'side' on an effect that is not a threshold
        text = text.replace("coefficient = 0.25 }", 'coefficient = 0.25, side = "above" }')
        message = "'side' only applies to threshold effects"
    with pytest.raises(CardError, match="invalid model card") as err:
        load_card(text)
    assert message in str(err.value)


def test_response_unit_checks_the_baseline_and_the_response_name() -> None:
    card = load_card(MODELS / "examples" / "warfarin_pca.toml")
    assert (card.structure.response, card.units.response) == ("pca", "%")
    text = (MODELS / "examples" / "warfarin_pca.toml").read_text(encoding="utf-8")
    with pytest.raises(CardError, match="parameter 'r0' has unit '10\\^9/L'; the structure"):
        load_card(text.replace('unit = "%"', 'unit = "10^9/L"', 1))
    with pytest.raises(CardError, match=r"structure\.response"):
        load_card(text.replace('response = "pca"', 'response = "PCA prothrombin"', 1))


def test_build_checks_the_response_and_per_units_against_the_data() -> None:
    from tpopk.data import read_events
    from tpopk.datasets import load_phenobarbital, load_warfarin
    from tpopk.model import build_model

    warfarin = load_card(MODELS / "examples" / "warfarin_pca.toml")
    events = load_warfarin()
    model = build_model(warfarin, events)
    assert {"y_conc", "y_pca", "ipred_pca"} <= set(model.named_vars)
    units = {**events.units.as_dict(), "pca": "1"}
    other = read_events(events.frame, units=units)
    with pytest.raises(CardError, match="response 'pca' in '%', but the data declare '1'"):
        build_model(warfarin, other)
    in_days = read_events(events.frame, units={**events.units.as_dict(), "TIME": "d"})
    with pytest.raises(CardError, match="the data declare TIME in 'd': give TIME"):
        build_model(warfarin, in_days)
    pheno = load_phenobarbital()
    per_kg = load_card(PER_KG_APGAR.replace('per = "WT"', 'per = "APGR"', 1))
    with pytest.raises(CardError, match="'per' = 'APGR' needs the unit of APGR declared"):
        build_model(per_kg, pheno)
    built = build_model(load_card(MODELS / "examples" / "phenobarbital_wt_apgar.toml"), pheno)
    assert "beta_v_APGR" in built.named_vars


LOGIT_EMAX = """
name = "logit"
[structure]
pk = "iv_1cmt"
[parameters.cl]
unit = "L/h"
prior = { dist = "LogNormal", mu = 0.0, sigma = 1.0 }
source = "test"
[parameters.v]
unit = "L"
prior = { dist = "LogNormal", mu = 0.0, sigma = 1.0 }
source = "test"
[parameters.f]
unit = "-"
prior = { dist = "Beta", alpha = 8.0, beta = 2.0 }
iiv = { dist = "HalfNormal", sigma = 1.0 }
iiv_scale = "logit"
source = "test"
[residual.conc]
error = "proportional"
sigma_prop = { dist = "HalfNormal", sigma = 0.5 }
"""


def test_logit_normal_iiv_keeps_a_fraction_in_its_range() -> None:
    import pymc as pm

    from tpopk.model.parameters import individual_parameters

    card = load_card(LOGIT_EMAX)
    assert load_card(card.to_toml_dict()) == card
    assert "iiv_scale" not in load_card(VALID).to_toml_dict()["parameters"]["cl"]
    with pm.Model(coords={"subject": list(range(5))}) as model:
        values = individual_parameters(card.parameters, pd.DataFrame(index=range(5)))
    f, pop, eta = pm.draw([values["f"], model["pop_f"], model["eta_f"]], draws=500, random_seed=3)
    assert ((f > 0) & (f < 1)).all()
    logit = np.log(f) - np.log1p(-f)
    np.testing.assert_allclose(logit, np.log(pop / (1 - pop))[:, None] + eta, atol=1e-9)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'prior = { dist = "Beta", alpha = 8.0, beta = 2.0 }',
            'prior = { dist = "LogNormal", mu = 0.0, sigma = 1.0 }',
            "prior must lie in [0, 1]",
        ),
        ('iiv = { dist = "HalfNormal", sigma = 1.0 }\n', "", "needs an estimated 'prior' and an"),
        (
            'iiv_scale = "logit"',
            'iiv_scale = "logit"\ncovariates = [{ covariate = "WT", effect = "power", '
            "reference = 70, coefficient = 0.75 }]",
            "'covariates' would multiply it out of that range",
        ),
        ('iiv_scale = "logit"', 'iiv_scale = "log"', "multiply it by factors unbounded above"),
    ],
)
def test_broken_logit_normal_iiv_names_the_problem(old: str, new: str, message: str) -> None:
    assert old in LOGIT_EMAX
    with pytest.raises(CardError, match="invalid model card") as err:
        load_card(LOGIT_EMAX.replace(old, new, 1))
    assert message in str(err.value)
