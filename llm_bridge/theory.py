"""What DPO optimises towards: the preference a policy expresses at the DPO loss's minimum.

For one prompt with two answers y_a (preferring option a) and y_b (preferring b), a dataset that
chooses y_a in a fraction q of its pairs, and a reference policy pi_ref, the DPO loss
(Rafailov et al. 2023, Eq. 7) averaged over the data is

    L(pi) = -q log sigma(beta h) - (1 - q) log sigma(-beta h),
    h = log pi(y_a)/pi_ref(y_a) - log pi(y_b)/pi_ref(y_b),

minimised where sigma(beta h) = q, i.e. beta h = logit(q) (their closed-form optimal policy,
pi*(y) proportional to pi_ref(y) exp(r(y)/beta), restricted to the two answers). The preference the
policy then expresses between the two answers, p^L = pi(y_a) / (pi(y_a) + pi(y_b)), satisfies

    logit(p^L) = logit(p_ref) + logit(q) / beta                                     (1)

where p_ref is the reference model's own preference. q in {0, 1} sends p^L to 0 or 1: DPO has
no finite optimum there. For the pair (o1, o3) that the data never compare, a Bradley-Terry
consistent implicit reward (r(o1) - r(o3) = (r(o1) - r(o2)) + (r(o2) - r(o3))) gives

    logit(p13^L) = logit(p13_ref) + (logit(q12) + logit(q23)) / beta.               (2)

The map q -> p^L amplifies changes of the data: dp^L/dq = p^L (1 - p^L) / (beta q (1 - q)),
which is 1/beta = 10 at beta = 0.1 and q = p^L = 1/2, and more where the reference disagrees
with the data. That is a sensitivity on top of Lemma 1's, measured the same way: the local M of
the map from data to learned preference (``local_M``).

Everything here is plain NumPy (no torch); the functions broadcast over arrays, work in
log-odds so that nothing rounds where p is within 1e-16 of 0 or 1, and return floats for
scalar input. The derivation is in docs/llm_theory.md; the tests check (1) against a direct
numerical minimisation of the DPO loss of a two-answer softmax policy.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "dpo_optimum",
    "dpo_optimum_averaged",
    "dpo_optimum_implied",
    "dpo_optimum_implied_logit",
    "dpo_optimum_logit",
    "fraction_covered",
    "local_M",
    "logit",
    "sigmoid",
]


def _out(x):
    return float(x) if np.ndim(x) == 0 else x


def _probability(name: str, p, *, closed: bool):
    p = np.asarray(p, dtype=np.float64)
    ok = (p >= 0) & (p <= 1) if closed else (p > 0) & (p < 1)
    if not np.all(ok):
        where = "[0, 1]" if closed else "(0, 1)"
        bad = p[~ok].ravel()[0] if p.ndim else p
        raise ValueError(f"{name} must be a probability in {where}, got {float(bad)!r}")
    return p


def _beta(beta):
    b = np.asarray(beta, dtype=np.float64)
    if not np.all(np.isfinite(b) & (b > 0)):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return b


def logit(p):
    """log(p / (1 - p)) from min(p, 1 - p), so that p = 1 - 1e-12 keeps its digits; +-inf at
    1 and 0.

    >>> round(logit(0.99), 6)
    4.59512
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.minimum(p, 1.0 - p)
    with np.errstate(divide="ignore"):
        x = np.log(q) - np.log1p(-q)
    return _out(np.where(p > 0.5, -x, x))


def sigmoid(x):
    """1 / (1 + e^-x) without overflow in either tail."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return _out(np.where(x >= 0, 1.0, e) / (1.0 + e))


def dpo_optimum_logit(p_ref, q, beta):
    """logit(p^L) = logit(p_ref) + logit(q) / beta, Eq. (1): the log-odds of the preference
    at the DPO loss's minimum (+-inf for q = 1, 0).

    Args:
        p_ref: the reference (untrained) model's preference, in (0, 1).
        q: the data's preference (fraction of pairs choosing a), in [0, 1].
        beta: the DPO temperature beta' (> 0; the paper's 0.1).
    """
    p_ref = _probability("p_ref", p_ref, closed=False)
    q = _probability("q", q, closed=True)
    return _out(np.asarray(logit(p_ref)) + np.asarray(logit(q)) / _beta(beta))


def dpo_optimum(p_ref, q, beta):
    """p^L = sigma(logit(p_ref) + logit(q) / beta), Eq. (1): the preference at DPO's optimum.

    >>> round(dpo_optimum(0.5, 0.6, 0.1), 6)  # at beta = 0.1 the data's 0.6 becomes 0.983
    0.982954
    """
    return sigmoid(dpo_optimum_logit(p_ref, q, beta))


def dpo_optimum_implied_logit(p13_ref, q12, q23, beta):
    """logit(p13^L) = logit(p13_ref) + (logit(q12) + logit(q23)) / beta, Eq. (2). Where the
    data's two logits are infinite with opposite signs (q12 = 1, q23 = 0) there is no limit:
    NaN."""
    p13_ref = _probability("p13_ref", p13_ref, closed=False)
    q12 = _probability("q12", q12, closed=True)
    q23 = _probability("q23", q23, closed=True)
    with np.errstate(invalid="ignore"):
        data = np.asarray(logit(q12)) + np.asarray(logit(q23))
    return _out(np.asarray(logit(p13_ref)) + data / _beta(beta))


def dpo_optimum_implied(p13_ref, q12, q23, beta):
    """p13^L at DPO's optimum for the pair the data never compare, Eq. (2).

    >>> round(dpo_optimum_implied(0.5, 0.99, 0.01, 0.1), 6)  # logit(0.99) + logit(0.01) = 0
    0.5
    """
    x = np.asarray(dpo_optimum_implied_logit(p13_ref, q12, q23, beta))
    return _out(np.where(np.isnan(x), np.nan, sigmoid(np.nan_to_num(x, nan=0.0))))


def local_M(p_ref, q, beta):
    """|dp^L/dq| = p^L (1 - p^L) / (beta q (1 - q)): the local M of the map from the data's
    preference to the learned one at DPO's optimum (Definition 3 applied to Eq. (1)), computed
    as exp(log p^L + log(1 - p^L) - log beta - log q - log(1 - q)) so that it stays finite
    where the factors under- or overflow. q must be in (0, 1).

    >>> round(local_M(0.5, 0.5, 0.1), 9)  # 1/beta where data, reference and policy are at 1/2
    10.0
    """
    q = _probability("q", q, closed=False)
    x = np.asarray(dpo_optimum_logit(p_ref, q, beta))
    # log p^L + log(1 - p^L) = -|x| - 2 log(1 + e^-|x|)
    log_pp = -np.abs(x) - 2.0 * np.log1p(np.exp(-np.abs(x)))
    log_qq = -np.abs(logit(q)) - 2.0 * np.log1p(np.exp(-np.abs(np.asarray(logit(q)))))
    return _out(np.exp(log_pp - np.log(_beta(beta)) - log_qq))


def fraction_covered(p_learned_logit, p_ref, q, beta):
    """How far training went towards DPO's optimum, in log-odds: (logit(p^L_measured) -
    logit(p_ref)) / (logit(q) / beta); 0 at the reference, 1 at the optimum, > 1 past it.
    NaN where the optimum is the reference itself (q = 1/2); 0 where the optimum is infinite
    (q = 0 or 1) and the measured point is finite."""
    p_ref = _probability("p_ref", p_ref, closed=False)
    q = _probability("q", q, closed=True)
    target = np.asarray(logit(q)) / _beta(beta)
    moved = np.asarray(p_learned_logit, dtype=np.float64) - np.asarray(logit(p_ref))
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(target == 0, np.nan, moved / target)
    return _out(frac)


def dpo_optimum_averaged(ref_logits, data_logit, beta):
    """The likelihood probe's preference at DPO's optimum, (p, logit).

    The probe averages P_c(a) over question contexts c (the probe question in both option
    orders); at the optimum each context's log-odds move by the same data_logit / beta (Eq. (1)
    for a pair, Eq. (2) with data_logit = logit(q12) + logit(q23) for the unseen pair), so the
    probe reads mean_c sigma(l_c + data_logit / beta), with l_c the reference model's per-context
    log-odds (``ProbeResult.details["log_odds"]``). ``data_logit`` broadcasts; returns NumPy
    arrays (floats for scalar input), the logit computed without cancellation.
    """
    refs = np.asarray(list(ref_logits), dtype=np.float64)
    if refs.ndim != 1 or refs.size == 0 or not np.all(np.isfinite(refs)):
        raise ValueError(f"ref_logits must be finite per-context log-odds, got {ref_logits!r}")
    shift = np.asarray(data_logit, dtype=np.float64) / _beta(beta)
    x = refs.reshape((-1,) + (1,) * shift.ndim) + shift  # (contexts, ...)
    with np.errstate(invalid="ignore"):
        # log mean sigma(x) - log mean sigma(-x), with log sigma(x) = -softplus(-x)
        log_p = _logmeanexp(-_softplus(-x))
        log_q = _logmeanexp(-_softplus(x))
        logit_mean = log_p - log_q
    return _out(np.exp(log_p)), _out(logit_mean)


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _logmeanexp(a):
    m = np.max(a, axis=0)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return m + np.log(np.mean(np.exp(a - m), axis=0))
