"""nutpie on PyTensor's cached numba functions (:mod:`tpopk.inference.nutpie_bridge`).

The reference is nutpie's own compile of the same model (``pm.sample(nuts_sampler=
"nutpie")``): same log density and gradient, and with the same seed the same draws.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_funcify, numba_njit

from tpopk.inference.nutpie_bridge import (
    RejectedPointError,
    _plausible_start,
    compile_nutpie,
    sample_nutpie,
    unconstrained_starts,
)

# One worker: these tests compile the same small model.
pytestmark = pytest.mark.xdist_group("nutpie_model")


def small_model() -> pm.Model:
    """A hierarchical normal model with a positive parameter and a deterministic."""
    rng = np.random.default_rng(3)
    with pm.Model(coords={"group": range(4)}) as model:
        mu = pm.Normal("mu", 0.0, 2.0)
        tau = pm.HalfNormal("tau", 1.0)
        z = pm.Normal("z", 0.0, 1.0, dims="group")
        theta = pm.Deterministic("theta", mu + tau * z, dims="group")
        pm.Normal("y", theta, 0.5, observed=rng.normal(1.0, 1.0, 4), dims="group")
    return model


def test_log_density_and_gradient_match_pymc():
    model = small_model()
    compiled = compile_nutpie(model)
    point = model.initial_point()
    point = {k: v + 0.3 for k, v in point.items()}
    flat = np.concatenate([np.ravel(point[v.name]) for v in model.value_vars])
    value, gradient = compiled._make_logp_func()(flat)
    assert value == pytest.approx(float(model.compile_logp()(point)), rel=1e-12)
    expected = model.compile_dlogp()(point)
    np.testing.assert_allclose(gradient, expected, rtol=1e-10)


def test_same_draws_as_pymc_nutpie_path():
    model = small_model()
    settings = {"draws": 50, "tune": 50, "chains": 2, "cores": 2}
    with model:
        reference = pm.sample(**settings, random_seed=11, nuts_sampler="nutpie", progressbar=False)
    tree = sample_nutpie(model, **settings, seed=11, progressbar=False)
    assert sorted(tree.children) == sorted(reference.children)
    for name in ("mu", "tau", "z", "theta"):
        np.testing.assert_array_equal(tree["posterior"][name], reference["posterior"][name])
    assert tree["posterior"]["theta"].dims == ("chain", "draw", "group")
    assert "sampling_time" in tree["posterior"].attrs


class Reciprocal(Op):
    """1 / x on a scalar, in numba as tpopk's kernels are: Python's error model, so x = 0
    raises ZeroDivisionError (PyTensor's own elementwise division returns inf instead)."""

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(1.0 / inputs[0])

    def grad(self, inputs, output_grads):
        return [-output_grads[0] / inputs[0] ** 2]


@numba_funcify.register(Reciprocal)
def _numba_reciprocal(op, node, **kwargs):
    @numba_njit
    def reciprocal(x):
        return np.asarray(1.0 / x.item())

    return reciprocal


def test_a_failing_log_density_is_a_rejected_point_not_a_crash():
    """Where the log density raises (1 / 0 at x = 3), nutpie gets a recoverable error."""
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0)
        pm.Potential("guard", -0.01 * Reciprocal()(pt.abs(x - 3.0)))
    logp = compile_nutpie(model)._make_logp_func()
    assert np.isfinite(logp(np.array([0.5]))[0])
    with pytest.raises(RejectedPointError) as raised:
        logp(np.array([3.0]))
    assert raised.value.is_recoverable


def walled_normal(x: np.ndarray) -> tuple[float, np.ndarray]:
    """Standard normal log density that collapses to -1e30 past x = 1 (as a proportional
    error does where a lag time passes the first sample) and raises below x = -2."""
    if np.any(x < -2.0):
        raise ZeroDivisionError("float division by zero")
    value = -1e30 if np.any(x > 1.0) else float(-0.5 * x @ x)
    return value, -x


def test_a_start_the_data_allow_is_kept_as_jittered():
    jittered = np.array([0.5, -0.9, 0.2])
    assert _plausible_start(jittered, np.zeros(3), walled_normal, floor=-100.0) is jittered


@pytest.mark.parametrize(
    ("jittered", "halvings"),
    [([0.5, 3.0, -0.4], 2), ([-5.0, 0.1, 0.0], 2)],  # past the wall; where it raises
    ids=["collapsed", "raised"],
)
def test_a_start_the_data_rule_out_is_shrunk_towards_the_support_point(jittered, halvings):
    jittered = np.array(jittered)
    start = _plausible_start(jittered, np.zeros(3), walled_normal, floor=-100.0)
    np.testing.assert_array_equal(start, jittered / 2**halvings)


def test_the_support_point_is_the_start_when_no_halving_helps():
    support = np.full(2, 0.5)

    def only_support(x):
        return (0.0 if np.array_equal(x, support) else -np.inf), np.zeros(2)

    start = _plausible_start(np.array([0.9, 0.1]), support, only_support, floor=-100.0)
    np.testing.assert_array_equal(start, support)


def test_compiled_starts_are_shrunk_where_the_data_rule_the_jitter_out():
    """The compiled model's own starts go through the shrink: past x = 0.5 the density
    collapses to -1e30, which U(-1, 1) jitter of the support point 0 reaches for about a
    quarter of the seeds."""
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0)
        pm.Potential("wall", pt.switch(x > 0.5, -1e30, 0.0))
    compiled = compile_nutpie(model)
    logp = compiled._make_logp_func()
    starts = np.array([compiled._make_initial_points(seed)[0] for seed in range(40)])
    assert np.all(starts <= 0.5)
    assert all(logp(np.array([s]))[0] > -1e3 for s in starts)
    assert len(np.unique(starts)) > 30  # still jittered, not all the support point


def test_pathfinder_style_starts_are_the_draws_on_the_unconstrained_scale():
    """Constrained draws (tau > 0) become nutpie's flat vectors: mu, log(tau), z."""
    import xarray as xr

    model = small_model()
    rng = np.random.default_rng(5)
    mu, tau, z = rng.normal(size=(1, 3)), rng.gamma(2.0, size=(1, 3)), rng.normal(size=(1, 3, 4))
    posterior = xr.Dataset(
        {
            "mu": (("chain", "draw"), mu),
            "tau": (("chain", "draw"), tau),
            "z": (("chain", "draw", "group"), z),
        }
    )
    rows = unconstrained_starts(model, posterior, chains=3, seed=0)
    expected = np.column_stack([mu[0], np.log(tau[0]), z[0]])
    # three draws out of three, in a seeded random order
    assert sorted(map(tuple, rows.round(12))) == sorted(map(tuple, expected.round(12)))


def test_given_starts_start_the_chains_in_turn():
    model = small_model()
    starts = np.arange(12.0).reshape(2, 6) / 10
    compiled = compile_nutpie(model, starts=starts)
    first, second, third = (np.ravel(compiled._make_initial_points(s)) for s in (7, 7, 8))
    np.testing.assert_array_equal(first, starts[0])
    np.testing.assert_array_equal(second, starts[1])
    np.testing.assert_array_equal(third, starts[0])


def test_gradients_are_counted_in_warmup_and_in_sampling():
    model = small_model()
    tree = sample_nutpie(
        model, draws=20, tune=30, chains=2, cores=1, seed=3, progressbar=False, maxdepth=3
    )
    stats = tree["sample_stats"]
    assert stats.attrs["sampling_gradients"] == int(stats["n_steps"].sum())
    # one to 2**3 - 1 leapfrog steps (one gradient each) per warm-up iteration and chain
    assert 2 * 30 <= stats.attrs["warmup_gradients"] <= 2 * 30 * 7
    assert not [name for name in tree.children if str(name).startswith("warmup")]
