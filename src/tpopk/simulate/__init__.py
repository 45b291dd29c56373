"""Virtual trials: designs as data, closed-loop titration, endpoints.

>>> from tpopk.simulate import load_trial, sample_population, run_trial, evaluate_endpoints
>>> design = load_trial("models/trials/romiplostim_kuter2008.toml")  # doctest: +SKIP
>>> population = sample_population(design, n_patients=200, seed=1)  # doctest: +SKIP
>>> trial = run_trial(design, responders, population)  # doctest: +SKIP
>>> evaluate_endpoints(trial, design.endpoints)  # doctest: +SKIP
"""

from tpopk.simulate.design import (
    Arm,
    Cohort,
    Enrolment,
    LogNormal,
    Population,
    Rescue,
    Rule,
    StartRule,
    Titration,
    Transfusion,
    TrialDesign,
    TrialDesignError,
    Visits,
    VisitWindow,
    load_trial,
)
from tpopk.simulate.endpoints import (
    Endpoint,
    Response,
    Subgroup,
    change_from_baseline_at,
    count_at,
    days_above,
    durable_responders,
    evaluate_endpoints,
    fold_change_at,
    overshoot,
    peak_fold_change,
    responders_at,
    responders_ever,
    responders_in_assessments,
    responding,
    time_in_response,
    time_to_peak,
    time_to_response,
)
from tpopk.simulate.trial import (
    ResponseModel,
    run_trial,
    sample_population,
    split_draws,
    trial_events,
)

__all__ = [
    "Arm",
    "Cohort",
    "Endpoint",
    "Enrolment",
    "LogNormal",
    "Population",
    "Rescue",
    "Response",
    "ResponseModel",
    "Rule",
    "StartRule",
    "Subgroup",
    "Titration",
    "Transfusion",
    "TrialDesign",
    "TrialDesignError",
    "VisitWindow",
    "Visits",
    "change_from_baseline_at",
    "count_at",
    "days_above",
    "durable_responders",
    "evaluate_endpoints",
    "fold_change_at",
    "load_trial",
    "overshoot",
    "peak_fold_change",
    "responders_at",
    "responders_ever",
    "responders_in_assessments",
    "responding",
    "run_trial",
    "sample_population",
    "split_draws",
    "time_in_response",
    "time_to_peak",
    "time_to_response",
    "trial_events",
]
