"""Thrombopoiesis model structures: declared parameters, states and drive.

A :class:`PDModel` names a structure's parameters (with units), states, structural
integers and which rate the drug acts on, so a model card can select it by name from
:data:`PD_MODELS`; its equations are compiled in :mod:`tpopk.pd.kernels`.

The drive multiplies the rate the drug acts on: production for the transit, lifespan and
indirect-response types I/III, loss for indirect-response types II/IV. Stimulation
(TPO-RAs) is ``m > 1``, inhibition (cytotoxics) ``m < 1``; see :mod:`tpopk.pd.drug_effect`.
The endogenous-TPO structure takes ``1 +`` the agonist's receptor signal instead.

Units: time in h, platelets (or the response) in the unit of the baseline parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from tpopk.errors import TpopkError
from tpopk.pd.grid import DEFAULT_MAX_STEP
from tpopk.pd.kernels import (
    ENDOGENOUS_TPO,
    FRIBERG,
    INDIRECT_LOSS,
    INDIRECT_PRODUCTION,
    LIFESPAN,
    PDMDD_LIFESPAN,
    QSS_TMDD_LIFESPAN,
    TMDD_FRIBERG,
)
from tpopk.pk.models import StructuralParameter  # one parameter declaration for PK and PD


@dataclass(frozen=True)
class PDModel:
    """A thrombopoiesis model structure the solver can integrate.

    Parameters
    ----------
    name
        Registry key.
    kernel_id
        Which compiled kernels integrate it (module constants ``FRIBERG`` ...).
    parameters
        Declared parameters, in the column order of the solver's parameter matrix.
    config
        Structural integers (number of transit or ageing compartments); they fix the
        number of states.
    drive
        Which rate the drug-effect multiplier acts on: ``"production"`` or ``"loss"``.
    observed
        Indices of the states whose sum is the observed response (the circulating count).
    description
        One line for model cards and reports.
    state_names
        Names of the ODE states, in kernel order.
    dose_state
        State that receives bolus doses (structures with ODE pharmacokinetics), or -1.
    pk_compartments
        States of the ODE pharmacokinetics in NONMEM ``CMT`` order (CMT 1 first), for
        structures with a ``dose_state``; see :meth:`dose_state_of`.
    max_step
        Longest RK4 step (h) that meets the accuracy target for this structure; pass it to
        :meth:`tpopk.pd.SolverGrid.build`.
    """

    name: str
    kernel_id: int
    parameters: tuple[StructuralParameter, ...]
    config: tuple[int, ...]
    drive: str
    observed: tuple[int, ...]
    description: str
    state_names: tuple[str, ...] = field(default=())
    dose_state: int = -1
    max_step: float = DEFAULT_MAX_STEP
    pk_compartments: tuple[str, ...] = ()

    @property
    def n_states(self) -> int:
        """Number of ODE states."""
        return len(self.state_names)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Declared parameter names, in solver column order."""
        return tuple(p.name for p in self.parameters)

    def dose_state_of(self, cmt: npt.ArrayLike) -> int:
        """Return the state that takes doses of NONMEM ``CMT`` ``cmt`` (every element).

        The solver adds doses to one state, :attr:`dose_state` (CMT 1, the depot); doses
        into another of :attr:`pk_compartments` (IV into the central compartment) need a
        closed-form PK card and are refused, as are compartments the structure lacks.

        Raises
        ------
        TpopkError
            If the structure takes no doses or a ``CMT`` is not its dosed one.
        """
        if self.dose_state < 0:
            raise TpopkError(f"PD structure '{self.name}' has no pharmacokinetic states to dose")
        numbering = ", ".join(f"{i + 1} {name}" for i, name in enumerate(self.pk_compartments))
        for value in np.unique(np.asarray(cmt)).tolist():
            if value != 1:
                where = (
                    f"its {self.pk_compartments[value - 1]}"
                    if value == int(value) and 1 <= value <= len(self.pk_compartments)
                    else "a compartment it does not have"
                )
                raise TpopkError(
                    f"PD structure '{self.name}' takes doses into CMT 1 "
                    f"({self.pk_compartments[0]}) only, not CMT {value:g} ({where}); its "
                    f"compartments are CMT {numbering}"
                )
        return self.dose_state

    def config_array(self) -> npt.NDArray[np.int64]:
        """Structural integers as the array the kernels read."""
        return np.asarray(self.config, dtype=np.int64)


def friberg(n_transit: int = 3) -> PDModel:
    """Friberg transit model: proliferating precursors → ``n_transit`` → circulating.

    ``dProl/dt = ktr·Prol·(m(t)·(circ0/Circ)^gamma - 1)``, ``dT_i/dt = ktr·(T_{i-1} - T_i)``,
    ``dCirc/dt = ktr·T_n - kel_ratio·ktr·Circ`` with ``ktr = (n_transit + 1)/mtt``
    (Friberg et al., J Clin Oncol 2002;20:4713; three transit compartments is the
    published default, four is used for platelets by Pérez-Ruixo 2012 and Petrov 2024).

    ``kel_ratio`` is the disease modifier for the circulating compartment: the loss rate of
    circulating cells relative to ``ktr`` (1 in Friberg's model; > 1 for the increased
    platelet destruction of ITP; splenectomy lowers it). The feedback is anchored at the
    subject's own baseline ``circ0``, so the steady state is ``Circ = circ0`` and
    ``Prol = T_i = kel_ratio·circ0`` whatever ``kel_ratio`` is; in this structure reduced
    production (liver disease) shows in the lower ``circ0`` itself.

    Parameters
    ----------
    n_transit
        Number of transit compartments between precursors and circulation (≥ 1).

    The solver carries ``log(Prol)`` (state ``log_prol``) rather than ``Prol``: the same
    solution, but its equation does not depend on itself, so strong inhibition during an
    infusion is not stiff.

    Returns
    -------
    PDModel
        The structure, with states ``log_prol, transit_1..n, circ``.
    """
    if n_transit < 1:
        raise TpopkError(f"friberg: n_transit must be at least 1, got {n_transit}")
    return PDModel(
        name="friberg" if n_transit == 3 else f"friberg_{n_transit}",
        kernel_id=FRIBERG,
        parameters=(
            StructuralParameter("circ0", "10^9/L", "baseline circulating count (steady state)"),
            StructuralParameter("mtt", "h", "mean transit time, precursors to circulation"),
            StructuralParameter("gamma", "1", "feedback exponent on (circ0/circ)"),
            StructuralParameter(
                "kel_ratio",
                "1",
                "loss rate of circulating cells relative to ktr (ITP > 1)",
                default=1.0,
            ),
        ),
        config=(n_transit,),
        drive="production",
        observed=(n_transit + 1,),
        description=f"Friberg transit model, {n_transit} transit compartments, feedback",
        state_names=("log_prol", *(f"transit_{i + 1}" for i in range(n_transit)), "circ"),
    )


def indirect_response(kind: int) -> PDModel:
    """Indirect-response (turnover) model type I-IV (Dayneka, Garg & Jusko 1993).

    ``dR/dt = kout·r0·m(t) - kout·R`` (types I and III: drug acts on production) or
    ``dR/dt = kout·r0 - kout·m(t)·R`` (types II and IV: drug acts on loss). Types I/II
    inhibit (``m = 1 - effect``), III/IV stimulate (``m = 1 + effect``); the sign lives in
    the drug-effect model, so I and III (II and IV) share their equation.

    Parameters
    ----------
    kind
        1, 2, 3 or 4.

    Returns
    -------
    PDModel
        The structure, with one state ``response``.
    """
    if kind not in (1, 2, 3, 4):
        raise TpopkError(f"indirect_response: kind must be 1, 2, 3 or 4, got {kind}")
    on_production = kind in (1, 3)
    acts = "inhibits" if kind in (1, 2) else "stimulates"
    rate = "production" if on_production else "loss"
    return PDModel(
        name=f"idr{kind}",
        kernel_id=INDIRECT_PRODUCTION if on_production else INDIRECT_LOSS,
        parameters=(
            StructuralParameter("r0", "response unit", "baseline response (steady state)"),
            StructuralParameter("kout", "1/h", "first-order loss rate constant of the response"),
        ),
        config=(),
        drive=rate,
        observed=(0,),
        description=f"indirect response type {kind}: drug {acts} {rate}",
        state_names=("response",),
    )


def lifespan(n_precursor: int = 10, n_platelet: int = 10) -> PDModel:
    """Lifespan model in transit form: precursor and platelet ageing compartments.

    Precursors enter at ``kin·m(t)·(plt0/P)^gamma`` with ``kin = plt0/tplt`` and ``P`` the
    circulating count, and age through ``n_precursor`` compartments at rate
    ``n_precursor/tp``; platelets age through ``n_platelet`` compartments at rate
    ``n_platelet/tplt``; the observed count ``P`` is the sum of the platelet compartments.
    ``gamma = 0`` (the default) is the open-loop model of the TPO-RA literature; ``gamma >
    0`` adds Friberg's feedback on production (Friberg 2002; for platelets Pérez-Ruixo C,
    AAPS J 2016, and the lusutrombopag model of Katsube 2016): counts above baseline lower
    production, which shortens the return after a course. The steady state is the same.
    The chain is the gamma-distributed-lifespan form of the Krzyzanski cytokinetic model
    (Krzyzanski, J PKPD 2011;38:179); 10 + 10 compartments as in Wang et al., AAPS J
    2010;12:729 (romiplostim).

    Parameters
    ----------
    n_precursor, n_platelet
        Numbers of precursor and platelet ageing compartments (≥ 1 each).

    Returns
    -------
    PDModel
        The structure, with states ``precursor_1..`` then ``platelet_1..``.
    """
    if n_precursor < 1 or n_platelet < 1:
        raise TpopkError("lifespan: need at least one precursor and one platelet compartment")
    return PDModel(
        name="lifespan",
        kernel_id=LIFESPAN,
        parameters=(
            StructuralParameter("plt0", "10^9/L", "baseline platelet count (steady state)"),
            StructuralParameter("tp", "h", "precursor lifespan (maturation time)"),
            StructuralParameter("tplt", "h", "platelet lifespan in circulation"),
            StructuralParameter(
                "gamma", "1", "feedback exponent on (plt0/platelets), 0 = none", default=0.0
            ),
        ),
        config=(n_precursor, n_platelet),
        drive="production",
        observed=tuple(range(n_precursor, n_precursor + n_platelet)),
        description=(
            f"lifespan model, {n_precursor} precursor and {n_platelet} platelet compartments"
        ),
        state_names=(
            *(f"precursor_{i + 1}" for i in range(n_precursor)),
            *(f"platelet_{i + 1}" for i in range(n_platelet)),
        ),
        # The default 12 h step: the chain's rates n/tplt are parameters (ITP shortens tplt
        # tenfold, to ~25 h), and the integrator substeps wherever k*h would exceed its
        # stability bound (tpopk.pd.kernels, "Stability"), so no fixed step is needed here.
    )


def endogenous_tpo(n_transit: int = 3) -> PDModel:
    """Mechanistic thrombopoietin feedback: the platelet mass clears the TPO that drives it.

    TPO is produced at a constant rate and cleared non-specifically and by receptors on the
    platelet and megakaryocyte mass; receptor occupancy by TPO plus agonist drives precursor
    proliferation, so the feedback is a consequence of TPO turnover rather than an
    exponent (physiology: Kaushansky; clearance by platelet mass: Jin & Krzyzanski,
    AAPS PharmSci 2004;6:E9; TPO and agonist sharing one receptor-occupancy term as in the
    lusutrombopag QSP of Shimizu et al., CPT:PSP 2021;10:489)::

        mass   = circ/(1 - pool_fraction) + prol + transit_1..n
        dTPO   = ktpo*tpo0 - ktpo*TPO*((1 - frac_receptor) + frac_receptor*mass/mass0)
        signal = TPO/ec50_tpo + (m - 1),    occupancy = signal/(1 + signal)
        dprol  = ktr*prol*(occupancy/occupancy0 - 1)
        dT_i   = ktr*(T_{i-1} - T_i)
        dcirc  = (1 - pool_fraction)*ktr*T_n - circ/tplt

    The drive ``m`` is ``1 +`` the agonist's receptor signal in units of its own EC50
    (``drug_effect.linear(conc, 1/ec50_agonist)``); ``m >= 1``. Baseline-anchored like
    :func:`friberg`: the steady state is ``circ0`` and ``tpo0`` for every parameter set, and
    the disease modifiers change kinetics: a short ``tplt`` (ITP destruction), a large
    ``pool_fraction`` (splenic pooling in liver disease; about 1/3 in health, 0 after
    splenectomy; Shimizu 2021), a low ``tpo0`` (reduced hepatic TPO production in liver
    disease; 1.4 pM healthy vs 0.78 pM CLD in Shimizu 2021).

    Parameters
    ----------
    n_transit
        Number of megakaryocyte transit compartments (>= 1).

    Returns
    -------
    PDModel
        The structure, with states ``tpo, prol, transit_1..n, circ``.
    """
    if n_transit < 1:
        raise TpopkError(f"endogenous_tpo: n_transit must be at least 1, got {n_transit}")
    return PDModel(
        name="endogenous_tpo" if n_transit == 3 else f"endogenous_tpo_{n_transit}",
        kernel_id=ENDOGENOUS_TPO,
        parameters=(
            StructuralParameter("circ0", "10^9/L", "baseline circulating platelet count"),
            StructuralParameter("mtt", "h", "mean transit time, precursors to circulation"),
            StructuralParameter("tplt", "h", "mean platelet lifespan in circulation"),
            StructuralParameter("tpo0", "pM", "baseline plasma TPO"),
            StructuralParameter(
                "ec50_tpo", "pM", "TPO concentration giving half receptor occupancy"
            ),
            StructuralParameter("ktpo", "1/h", "baseline TPO elimination rate constant"),
            StructuralParameter(
                "frac_receptor", "1", "share of baseline TPO clearance by platelet/MK mass"
            ),
            StructuralParameter(
                "pool_fraction", "1", "share of platelets pooled in the spleen", default=0.0
            ),
        ),
        config=(n_transit,),
        drive="receptor signal",
        observed=(n_transit + 2,),
        description=f"endogenous TPO feedback, {n_transit} megakaryocyte transit compartments",
        state_names=("tpo", "prol", *(f"transit_{i + 1}" for i in range(n_transit)), "circ"),
    )


#: Parameters of SC absorption, quasi-equilibrium binding to a platelet-borne target and
#: the free drug's stimulation, in kernel order (:func:`tmdd_friberg`, :func:`pdmdd_lifespan`).
_TARGET_BINDING = (
    StructuralParameter("ka", "1/h", "first-order absorption rate constant"),
    StructuralParameter("v", "L", "apparent (central) volume of distribution, V/F"),
    StructuralParameter("kel", "1/h", "linear elimination rate constant of free drug"),
    StructuralParameter("kint", "1/h", "internalisation rate constant of bound drug"),
    StructuralParameter("kd", "amount/L", "quasi-equilibrium dissociation constant"),
    StructuralParameter("rdens", "amount/L per count", "target capacity per platelet count"),
    StructuralParameter("emax", "1", "maximal stimulation of precursor production"),
    StructuralParameter("ec50", "amount/L", "free concentration at half-maximal stimulation"),
)


def tmdd_friberg(n_transit: int = 4) -> PDModel:
    """Target-mediated disposition (quasi-equilibrium) on platelets, driving a Friberg model.

    For agonists whose receptor (c-Mpl) sits on platelets and megakaryocytes, so that
    exposure falls as platelets rise (romiplostim: Wang et al., AAPS J 2010;12:729;
    hetrombopag: modified TMDD, Wang Z et al., BJCP 2022;88:2084). One-compartment
    disposition with first-order absorption from a dosed depot; drug binds its target in
    quasi-equilibrium (Mager & Krzyzanski 2005), the target capacity is proportional to the
    circulating count, bound drug is internalised::

        total = amount/v,  target = rdens*circ
        free  = root of total = free + target*free/(kd + free)
        d depot  = -ka*depot
        d amount = ka*depot - kel*v*free - kint*v*(total - free)
        d prol   = ktr*prol*(m*(1 + emax*free/(ec50 + free))*(circ0/circ)^gamma - 1)
        transit and circ as in :func:`friberg` (kel_ratio 1)

    Saturation gives the Michaelis-Menten-like limit (``kint*target*free/(kd + free)``) when
    little drug is bound. Doses enter the depot through ``SolverGrid.dose_amounts``;
    ``v`` is apparent (V/F) because bioavailability is not identifiable from SC data alone.
    Concentrations are in dose unit per litre; ``kd``, ``ec50`` and ``rdens*circ`` share
    that unit. Build its grid with ``max_step=model.max_step`` (4 h). The free
    concentration of a state is :func:`tpopk.pd.kernels.free_concentration` (NumPy
    simulation); a PK likelihood on free drug inside a PyMC graph is not provided yet.

    Parameters
    ----------
    n_transit
        Number of transit compartments (4 for platelets, Pérez-Ruixo 2012).

    Returns
    -------
    PDModel
        The structure, with states ``depot, amount, prol, transit_1..n, circ``.
    """
    if n_transit < 1:
        raise TpopkError(f"tmdd_friberg: n_transit must be at least 1, got {n_transit}")
    return PDModel(
        name="tmdd_friberg" if n_transit == 4 else f"tmdd_friberg_{n_transit}",
        kernel_id=TMDD_FRIBERG,
        parameters=(
            *_TARGET_BINDING,
            StructuralParameter("circ0", "10^9/L", "baseline circulating platelet count"),
            StructuralParameter("mtt", "h", "mean transit time, precursors to circulation"),
            StructuralParameter("gamma", "1", "feedback exponent on (circ0/circ)"),
        ),
        config=(n_transit,),
        drive="production",
        observed=(n_transit + 3,),
        description=f"QE-TMDD on platelets driving a Friberg model, {n_transit} transit",
        state_names=(
            "depot",
            "amount",
            "prol",
            *(f"transit_{i + 1}" for i in range(n_transit)),
            "circ",
        ),
        dose_state=0,
        pk_compartments=("depot", "amount"),
        # Binding kinetics (kint ~0.17 /h) are faster than platelets: against solve_ivp the
        # drug amount erred 7.8e-3 at 12 h steps, 1.7e-4 at 4 h (tests/pd, weekly SC).
        max_step=4.0,
    )


def pdmdd_lifespan(n_precursor: int = 10, n_platelet: int = 10) -> PDModel:
    """Pharmacodynamic-mediated drug disposition on the lifespan model (Wang 2010).

    Romiplostim's receptor sits on platelets, so its clearance rises with the count it
    raises: the PDMDD model of Wang et al., AAPS J 2010;12:729 (healthy volunteers, SC
    and IV): SC depot, central and peripheral compartments, quasi-equilibrium binding
    (Mager & Krzyzanski 2005) to a target of capacity ``rdens`` per unit platelet count,
    internalisation of bound drug, and free drug stimulating precursor production of the
    :func:`lifespan` chain, whose states and parameters come first::

        total = central/v,  free = root of total = free + rdens*P*free/(kd + free)
        d depot      = -ka*depot
        d central    = ka*depot - kint*central - v*(kel - kint + kcp)*free + kpc*peripheral
        d peripheral = kcp*v*free - kpc*peripheral
        production   = kin*m*(1 + emax*free/(ec50 + free))*(plt0/P)^gamma

    with the ageing chain as in :func:`lifespan` (``m`` an extra drive, 1 for romiplostim
    alone). Distribution acts on free drug; ``kcp = 0`` (the default) is the one-compartment
    form. Doses enter the depot through ``SolverGrid.dose_amounts`` (bioavailability in
    the dose: ``v`` is V/F). Concentrations are in dose unit per litre; ``kd``, ``ec50``
    and ``rdens*P`` share that unit; the free concentration of a state is
    :func:`tpopk.pd.kernels.free_concentration`.

    Parameters
    ----------
    n_precursor, n_platelet
        Ageing compartments (10 + 10 in Wang 2010).

    Returns
    -------
    PDModel
        The structure, states ``precursor_1.., platelet_1.., depot, central, peripheral``.
    """
    chain = lifespan(n_precursor, n_platelet)
    return PDModel(
        name="pdmdd_lifespan",
        kernel_id=PDMDD_LIFESPAN,
        parameters=(
            *chain.parameters,
            *_TARGET_BINDING,
            StructuralParameter("kcp", "1/h", "central to peripheral rate constant", default=0.0),
            StructuralParameter("kpc", "1/h", "peripheral to central rate constant", default=0.0),
        ),
        config=chain.config,
        drive="production",
        observed=chain.observed,
        description=(
            f"PDMDD on the lifespan model, {n_precursor} precursor and {n_platelet} "
            "platelet compartments"
        ),
        state_names=(*chain.state_names, "depot", "central", "peripheral"),
        dose_state=n_precursor + n_platelet,
        pk_compartments=("depot", "central", "peripheral"),
        # Binding kinetics (kint ~0.17 /h) need short steps, as for tmdd_friberg; 3 h
        # because SDIRK2 steps (lifespans under 2.4 h) take the drug rows explicitly and
        # are first order there: against solve_ivp at a 3 h lifespan (tests/pd) platelets
        # erred 9.4e-4 and drug 1.0e-3 at 4 h steps, 7.0e-4 and 7.5e-4 at 3 h.
        max_step=3.0,
    )


def qss_tmdd_lifespan(n_precursor: int = 10, n_platelet: int = 10) -> PDModel:
    """Oral QSS-TMDD pharmacokinetics with dual sequential absorption, on the lifespan model.

    For agonists whose published popPK is nonlinear through target binding (hetrombopag:
    modified TMDD with dual sequential first-order absorption, Wang Z et al., BJCP
    2022;88:2084). The drug is integrated with the platelets, so its concentration is an
    ODE state, not a closed form. The dose enters the first absorption site, which empties
    into the central compartment at ``ka1`` and into a second site at ``k12``; the second
    site absorbs at ``ka2``: absorption from the second site follows the first (the
    fraction ``ka1/(ka1 + k12)`` is absorbed first), the sequential form of the two
    processes without a lag time, which would not be differentiable in time on a fixed
    grid. Central kinetics are the quasi-steady-state TMDD approximation (Gibiansky et al.,
    J Pharmacokinet Pharmacodyn 2008;35:573) with target turnover, on total drug::

        total  = central/v,  free = root of total = free + target*free/(kss + free)
        complex = total - free
        d site1   = -(ka1 + k12)*site1
        d site2   = k12*site1 - ka2*site2
        d central = ka1*site1 + ka2*site2 - cl*free - kint*v*complex
        d target  = kdeg*(rtot0 - target) - (kint - kdeg)*complex
        production = kin*m*(1 + slope*free)*(plt0/P)^gamma

    with the ageing chain as in :func:`lifespan`, whose states and parameters come first
    (``m`` an extra drive, 1 for the agonist alone). ``target`` is the total target
    concentration, starting at its steady state ``rtot0`` (Gibiansky's ``R0``, named apart
    from the indirect-response baseline ``r0``); ``kint = kdeg`` keeps it constant
    at ``rtot0``, and then target-mediated elimination is Michaelis-Menten in free drug with
    ``Vmax = kint*rtot0*v`` and ``Km = kss``; ``rtot0 = 0`` is linear one-compartment PK. The
    free concentration rises more than in proportion to the dose while the target
    saturates, so AUC does. Doses enter site 1 through ``SolverGrid.dose_amounts``
    (bioavailability in the dose: ``v`` and ``cl`` are apparent). Concentrations are in
    dose unit per litre; ``kss``, ``rtot0`` and ``1/slope`` share that unit; the free
    concentration of a state is :func:`drug_concentration`.

    Parameters
    ----------
    n_precursor, n_platelet
        Ageing compartments of the lifespan chain.

    Returns
    -------
    PDModel
        The structure, states ``precursor_1.., platelet_1.., site_1, site_2, central,
        target``.
    """
    chain = lifespan(n_precursor, n_platelet)
    return PDModel(
        name="qss_tmdd_lifespan",
        kernel_id=QSS_TMDD_LIFESPAN,
        parameters=(
            *chain.parameters,
            StructuralParameter("ka1", "1/h", "absorption rate constant, first site"),
            StructuralParameter("k12", "1/h", "transfer rate constant, first to second site"),
            StructuralParameter("ka2", "1/h", "absorption rate constant, second site"),
            StructuralParameter("v", "L", "apparent central volume, Vc/F"),
            StructuralParameter("cl", "L/h", "apparent linear clearance of free drug, CL/F"),
            StructuralParameter("kint", "1/h", "internalisation rate constant of the complex"),
            StructuralParameter("kss", "amount/L", "quasi-steady-state constant"),
            StructuralParameter("kdeg", "1/h", "degradation rate constant of free target"),
            StructuralParameter("rtot0", "amount/L", "baseline total target concentration"),
            StructuralParameter("slope", "L/amount", "stimulation of production per free conc"),
        ),
        config=chain.config,
        drive="production",
        observed=chain.observed,
        description=(
            f"oral QSS-TMDD, dual sequential absorption, on the lifespan model, "
            f"{n_precursor} precursor and {n_platelet} platelet compartments"
        ),
        state_names=(*chain.state_names, "site_1", "site_2", "central", "target"),
        dose_state=n_precursor + n_platelet,
        pk_compartments=("site_1", "site_2", "central"),
        # As pdmdd_lifespan: SDIRK2 steps (lifespans under 2.4 h) take the drug rows
        # explicitly; tests/pd checks this step against solve_ivp.
        max_step=3.0,
    )


def drug_concentration(model: PDModel, params: Any, states: Any, xp: ModuleType = np) -> Any:
    """Free drug concentration of a structure with ODE pharmacokinetics, from its states.

    The concentration a PK observation of such a structure compares with: the free drug
    of the central compartment, the root of the QSS balance :func:`qss_tmdd_lifespan`
    states (:func:`tpopk.pd.kernels.free_concentration` in the kernels).

    Parameters
    ----------
    model
        A structure with a central drug state (:func:`qss_tmdd_lifespan`).
    params
        ``[S, P]`` parameter rows, as given to :func:`tpopk.pd.simulate` or
        :func:`tpopk.pd.solve`.
    states
        ``[S, K + 1, n_states]`` states from either.
    xp
        ``numpy`` (the default) or ``pytensor.tensor``, to differentiate through it.

    Returns
    -------
    array or TensorVariable
        ``[S, K + 1]`` free concentration (dose unit per litre); at the observations,
        ``result.reshape(-1)[grid.obs_index]``.
    """
    if model.kernel_id != QSS_TMDD_LIFESPAN:
        raise TpopkError(
            f"drug_concentration: {model.name} has no central drug state; "
            "expected a qss_tmdd_lifespan structure"
        )
    if xp is np:
        params, states = np.asarray(params, dtype=float), np.asarray(states, dtype=float)
        if params.ndim != 2 or params.shape[1] != len(model.parameters) or states.ndim != 3:
            raise TpopkError(
                f"drug_concentration: expected params [S, {len(model.parameters)}] and states "
                f"[S, K + 1, {model.n_states}], got {params.shape} and {states.shape}"
            )
    names = model.parameter_names
    v, kss = params[:, names.index("v"), None], params[:, names.index("kss"), None]
    central = model.state_names.index("central")
    total = xp.maximum(states[:, :, central], 0.0) / v
    target = xp.maximum(states[:, :, central + 1], 0.0)
    b = total - target - kss
    d = xp.sqrt(b * b + 4.0 * kss * total)
    # The root of free^2 - b*free - kss*total = 0 in the form free of cancellation; d > b
    # wherever b < 0, as kss > 0 (the guard only keeps the untaken branch finite).
    below = 2.0 * kss * total / xp.where(d - b > 0.0, d - b, 1.0)
    return xp.where(b >= 0.0, 0.5 * (b + d), below)


PD_MODELS: dict[str, PDModel] = {
    model.name: model
    for model in (
        friberg(3),
        friberg(4),
        *(indirect_response(k) for k in (1, 2, 3, 4)),
        lifespan(10, 10),
        endogenous_tpo(3),
        tmdd_friberg(4),
        pdmdd_lifespan(10, 10),
        qss_tmdd_lifespan(10, 10),
    )
}
