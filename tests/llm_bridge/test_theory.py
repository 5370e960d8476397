"""llm_bridge.theory against the DPO loss minimised directly (scipy) and mpmath derivatives."""

import math

import mpmath as mp
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logsumexp

from llm_bridge import theory

RTOL_OPT = 1e-6  # BFGS stopped at gtol 1e-10 on a smooth 1-D-effective problem
RTOL_F64 = 1e-12
mp.mp.dps = 40


def dpo_loss_minimum(p_ref_answers, q, beta):
    """The preference between answers 0 and 1 of a softmax policy over ``len(p_ref_answers)``
    answers that minimises the population DPO loss for a pair (y_0 chosen with frequency q)."""
    log_ref = np.log(np.asarray(p_ref_answers, dtype=float))

    def loss(theta):
        log_pi = theta - logsumexp(theta)
        h = (log_pi[0] - log_ref[0]) - (log_pi[1] - log_ref[1])
        return -(q * log_expit(beta * h) + (1 - q) * log_expit(-beta * h))

    def grad(theta):
        # h depends on theta_0 - theta_1 only (the normaliser cancels); dL/dh = beta (sigma(beta h) - q)
        h = (theta[0] - log_ref[0]) - (theta[1] - log_ref[1])
        g = np.zeros_like(theta)
        g[0] = beta * (expit(beta * h) - q)
        g[1] = -g[0]
        return g

    res = minimize(loss, log_ref.copy(), jac=grad, method="BFGS", options={"gtol": 1e-12})
    assert np.max(np.abs(grad(res.x))) < 1e-8, res.message
    log_pi = res.x - logsumexp(res.x)
    return expit(log_pi[0] - log_pi[1])


@pytest.mark.parametrize("q", [0.05, 0.3, 0.5, 0.7, 0.97])
@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("ref", [(0.3, 0.5, 0.2), (0.05, 0.05, 0.9), (0.6, 0.4)])
def test_eq1_is_the_minimum_of_the_dpo_loss(q, beta, ref):
    # a third answer (when given) takes mass the preference between the two must not see
    p_ref = ref[0] / (ref[0] + ref[1])
    want = dpo_loss_minimum(ref, q, beta)
    assert theory.dpo_optimum(p_ref, q, beta) == pytest.approx(want, rel=RTOL_OPT, abs=1e-12)


def test_eq2_is_the_minimum_for_a_bradley_terry_implicit_reward():
    # Three options with scores s = s_ref + r / beta; data compare (1, 2) with q12 and (2, 3)
    # with q23, never (1, 3); the DPO loss of both pairs is minimised over r.
    s_ref = np.array([0.3, -0.2, 0.4])
    q12, q23, beta = 0.9, 0.35, 0.5

    def loss(r):
        total = 0.0
        for (i, j), q in (((0, 1), q12), ((1, 2), q23)):
            h = r[i] - r[j]
            total -= q * log_expit(beta * h) + (1 - q) * log_expit(-beta * h)
        return total

    def grad(r):
        g = np.zeros(3)
        for (i, j), q in (((0, 1), q12), ((1, 2), q23)):
            d = beta * (expit(beta * (r[i] - r[j])) - q)
            g[i] += d
            g[j] -= d
        return g

    res = minimize(loss, np.zeros(3), jac=grad, method="BFGS", options={"gtol": 1e-12})
    assert np.max(np.abs(grad(res.x))) < 1e-8
    s = s_ref + res.x
    p13_ref = expit(s_ref[0] - s_ref[2])
    assert theory.dpo_optimum_implied(p13_ref, q12, q23, beta) == pytest.approx(
        expit(s[0] - s[2]), rel=RTOL_OPT
    )


@pytest.mark.parametrize("p_ref, q, beta", [(0.5, 0.5, 0.1), (0.2, 0.7, 0.1), (0.9, 0.01, 1.0)])
def test_local_M_is_the_derivative_of_eq1(p_ref, q, beta):
    def f(x):
        z = mp.log(mp.mpf(p_ref) / (1 - mp.mpf(p_ref))) + mp.log(x / (1 - x)) / beta
        return 1 / (1 + mp.exp(-z))

    want = mp.diff(f, mp.mpf(q))
    assert theory.local_M(p_ref, q, beta) == pytest.approx(float(want), rel=1e-10)
    # the example: at beta = 0.1 and q = p^L = 1/2 DPO multiplies a change by 10
    assert theory.local_M(0.5, 0.5, 0.1) == pytest.approx(10.0, rel=RTOL_F64)


def test_log_odds_stay_exact_near_the_edges():
    # p_ref = 1 - 1e-12 and q = 0.99 at beta = 0.1: logit = 27.63 + 45.95, p^L rounds to 1
    x = theory.dpo_optimum_logit(1 - 1e-12, 0.99, 0.1)
    p, q = mp.mpf(1 - 1e-12), mp.mpf(0.99)  # the float64 values, exactly
    want = mp.log(p / (1 - p)) + mp.log(q / (1 - q)) / mp.mpf(0.1)
    assert x == pytest.approx(float(want), rel=1e-10)
    assert theory.dpo_optimum(1 - 1e-12, 0.99, 0.1) == 1.0
    assert theory.dpo_optimum(0.3, 1.0, 0.1) == 1.0 and theory.dpo_optimum(0.3, 0.0, 0.1) == 0.0
    assert theory.dpo_optimum(0.3, 0.5, 0.1) == pytest.approx(0.3, rel=RTOL_F64)
    assert math.isnan(theory.dpo_optimum_implied(0.5, 1.0, 0.0, 0.1))  # no limit at (1, 0)
    assert theory.dpo_optimum_implied(0.5, 1.0, 0.3, 0.1) == 1.0
    # broadcasting
    got = theory.dpo_optimum(0.5, np.array([0.1, 0.5, 0.9]), 0.1)
    assert got.shape == (3,) and got[1] == pytest.approx(0.5)


def test_fraction_covered():
    target = theory.logit(0.3) / 0.1
    assert theory.fraction_covered(target, 0.5, 0.3, 0.1) == pytest.approx(1.0)
    assert theory.fraction_covered(0.0, 0.5, 0.3, 0.1) == 0.0
    assert theory.fraction_covered(2 * target, 0.5, 0.3, 0.1) == pytest.approx(2.0)
    assert theory.fraction_covered(30.0, 0.5, 1.0, 0.1) == 0.0  # an infinite optimum
    assert math.isnan(theory.fraction_covered(1.0, 0.5, 0.5, 0.1))


def test_bad_inputs():
    with pytest.raises(ValueError, match="q must be a probability in \\[0, 1\\]"):
        theory.dpo_optimum(0.5, 1.2, 0.1)
    with pytest.raises(ValueError, match="p_ref must be a probability in \\(0, 1\\)"):
        theory.dpo_optimum(1.0, 0.5, 0.1)
    with pytest.raises(ValueError, match="beta"):
        theory.dpo_optimum(0.5, 0.5, 0.0)
    with pytest.raises(ValueError, match="q must be"):
        theory.local_M(0.5, 1.0, 0.1)


def test_averaged_optimum_is_the_mean_over_contexts():
    refs = [1.3, -0.4]
    q, beta = 0.3, 0.5
    p, logit = theory.dpo_optimum_averaged(refs, theory.logit(q), beta)
    want = np.mean([theory.dpo_optimum(expit(r), q, beta) for r in refs])
    assert p == pytest.approx(want, rel=RTOL_F64)
    assert logit == pytest.approx(math.log(want / (1 - want)), rel=1e-10)
    # far in the tail, where p rounds to 1, the logit is that of the mean (mpmath)
    p, logit = theory.dpo_optimum_averaged(refs, theory.logit(0.99) * 10, 0.1)
    xs = [mp.mpf(r) + mp.log(99) * 100 for r in refs]
    up = sum(1 / (1 + mp.exp(-x)) for x in xs)
    down = sum(1 / (1 + mp.exp(x)) for x in xs)  # 1 - mean, without cancellation
    assert p == 1.0 and logit == pytest.approx(float(mp.log(up / down)), rel=1e-10)
    # arrays of data logits broadcast
    p, _ = theory.dpo_optimum_averaged(refs, np.array([-1.0, 0.0, 1.0]), 1.0)
    assert p.shape == (3,)
