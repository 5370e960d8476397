"""The paper's Bradley-Terry closed forms in mpmath (50 digits): independent references for the
llm_bridge tests that read learned points through prefjax."""

import mpmath as mp

mp.mp.dps = 50


def eq3(p, q):
    """Eq. (3), Bradley-Terry: p_ij = 1 / (1 + (1 - p_ik)(1 - p_kj) / (p_ik p_kj))."""
    p, q = mp.mpf(p), mp.mpf(q)
    return 1 / (1 + (1 - p) * (1 - q) / (p * q))


def eq4(p, q):
    """Eq. (4): dp_ij/dp_ik = p_kj (1 - p_kj) / (p_ik + p_kj - 2 p_ik p_kj - 1)^2."""
    p, q = mp.mpf(p), mp.mpf(q)
    return q * (1 - q) / (p + q - 2 * p * q - 1) ** 2
