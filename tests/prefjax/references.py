"""Independent high-precision references (mpmath, 50 digits) for the links under test.

Nothing here imports prefjax: each link is written again from its mathematical definition,
its inverse found by mpmath's own root finder or special functions.
"""

from __future__ import annotations

import math

import mpmath as mp

mp.mp.dps = 50


class MpLink:
    """g, g' and g^-1 at high precision."""

    def __init__(self, name, g, dg, inv=None):
        self.name, self.g, self.dg, self._inv = name, g, dg, inv

    def inv(self, p):
        p = mp.mpf(p)
        if self._inv is not None:
            return self._inv(p)
        # Bisection on a bracket that always contains the root (g increasing), then polish.
        lo, hi = mp.mpf(-1), mp.mpf(1)
        while self.g(lo) > p:
            lo *= 4
        while self.g(hi) < p:
            hi *= 4
        for _ in range(60):  # bisection to a good start
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.g(mid) < p else (lo, mid)
        x = (lo + hi) / 2
        for _ in range(12):  # Newton on log g(x) - log p: quadratic, scale-free in the tails
            gx = self.g(x)
            x -= (mp.log(gx) - mp.log(p)) * gx / self.dg(x)
        return x

    def compose(self, p_ik, p_kj):
        return self.g(self.inv(p_ik) + self.inv(p_kj))

    def d_ik(self, p_ik, p_kj):
        """Eq. (2): A1 * A2 = g'(g^-1(p_ik) + g^-1(p_kj)) / g'(g^-1(p_ik))."""
        x_ik, x_kj = self.inv(p_ik), self.inv(p_kj)
        return self.dg(x_ik + x_kj) / self.dg(x_ik)

    def d_kj(self, p_ik, p_kj):
        return self.d_ik(p_kj, p_ik)


def _sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def _dsigmoid(x):
    e = mp.exp(-x)  # mpmath exponents do not overflow; s (1 - s) would cancel at x = 800
    return e / (1 + e) ** 2


LOGISTIC = MpLink("logistic", _sigmoid, _dsigmoid, inv=lambda p: mp.log(p / (1 - p)))
# The probit inverse by root finding: erfinv(2p - 1) would lose the digits of p next to 0.
PROBIT = MpLink("probit", lambda x: mp.ncdf(x), lambda x: mp.npdf(x))


def at_400_digits(f):
    """Evaluate the textbook formula at 400 digits: 1/2 + atan(x)/pi cancels ~300 digits at
    x = -1e300, and so does tan(pi (p - 1/2)) at p = 1e-300."""

    def wrapped(x):
        with mp.workdps(400):
            return +f(mp.mpf(x))

    return wrapped


CAUCHIT = MpLink(
    "cauchit",
    at_400_digits(lambda x: mp.mpf(1) / 2 + mp.atan(x) / mp.pi),
    lambda x: 1 / (mp.pi * (1 + x * x)),
    inv=at_400_digits(lambda p: mp.tan(mp.pi * (p - mp.mpf(1) / 2))),
)
# A symmetric mixture of logistics with different scales: no closed-form inverse.
MIXTURE = MpLink(
    "mixture",
    lambda x: (_sigmoid(x) + _sigmoid(x / 3)) / 2,
    lambda x: (_dsigmoid(x) + _dsigmoid(x / 3) / 3) / 2,
)

MP_LINKS = {"logistic": LOGISTIC, "probit": PROBIT, "cauchit": CAUCHIT, "mixture": MIXTURE}


# --- areas of Omega_M (Definition 4) in closed form or as one-dimensional mpmath integrals ---


def _digits_for(M) -> int:
    """Working digits for an area at M: the closed forms cancel ~2 log10(M) digits."""
    return 40 + 2 * max(int(mp.log10(mp.mpf(M))), 0)


def mp_logistic_area(M):
    """Proposition 1: -atanh(1/M) + atanh(1/sqrt(M)) / sqrt(M), at enough digits for any M > 1."""
    with mp.workdps(_digits_for(M)):
        M = mp.mpf(M)
        return +(-mp.atanh(1 / M) + mp.atanh(1 / mp.sqrt(M)) / mp.sqrt(M))


def mp_probit_area(M):
    """For probit, |dp_ij/dp_ik| = phi(u + c) / phi(u) > M  <=>  u < -(c/2 + ln M / c) (c > 0),
    so each slice is Phi(-(c/2 + ln M/c)); the area is twice its integral against phi(c). The
    integrand peaks near c ~ sqrt(2 ln M) and is narrow at large M: 64 breakpoints up to
    twice that, 4 per unit of c."""
    lnM = mp.log(M)
    top = 2 * mp.sqrt(2 * abs(lnM)) + 8
    return 2 * mp.quad(
        lambda c: mp.ncdf(-(c / 2 + lnM / c)) * mp.npdf(c),
        mp.linspace(0, top, int(4 * top) + 1) + [mp.inf],
    )


def mp_cauchit_area(M):
    """For cauchit, (1 + u^2) / (1 + (u + c)^2) > M is a quadratic inequality in u: an interval
    (u1, u2) when c^2 > (M - 1)^2 / M, of probability length (atan u2 - atan u1) / pi."""
    with mp.workdps(_digits_for(M)):
        M = mp.mpf(M)
        c0 = (M - 1) / mp.sqrt(M)

        def slice_(c):
            disc = max(M * c * c - (M - 1) ** 2, 0)  # 0 at c0 up to rounding
            u1 = (-M * c - mp.sqrt(disc)) / (M - 1)
            u2 = (-M * c + mp.sqrt(disc)) / (M - 1)
            return (mp.atan(u2) - mp.atan(u1)) / mp.pi / (mp.pi * (1 + c * c))

        return +(2 * mp.quad(slice_, [c0, c0 * 2, c0 * 10, mp.inf]))


def to_float(x) -> float:
    return float(x) if not isinstance(x, float) else x


def rel_err(a, b) -> float:
    """|a - b| / |b|, with b the high-precision reference."""
    a, b = mp.mpf(float(a)), mp.mpf(b)
    if b == 0:
        return float(abs(a))
    return float(abs(a - b) / abs(b))


def is_close(a, b, rtol) -> bool:
    return math.isfinite(float(a)) and rel_err(a, b) <= rtol
