"""How sensitive is *my* preference model? A researcher's starting point.

Define a pairwise link g (here a symmetric mixture of two logistic scales, which has no
closed-form inverse), check that it meets the paper's Assumptions 2-5, and compare it with
Bradley-Terry: the implied preference and its sensitivities at a dominant point (Example 1),
the area of the M-sensitive region, and Theorem 1's witness.

Run: .venv/bin/python examples/sensitivity_of_my_link.py
"""

import jax

jax.config.update("jax_enable_x64", True)  # work near 0 and 1 needs float64

import prefjax  # noqa: E402


def my_g(x):
    return 0.5 * jax.nn.sigmoid(x) + 0.5 * jax.nn.sigmoid(x / 3.0)


def main():
    print(prefjax.check_assumptions(my_g))
    mine = prefjax.link(my_g, name="mixture")  # inverted numerically, checked again

    p_ik, p_kj = 0.99, 0.02  # Example 1 of the paper
    print(f"\nAt (p_ik, p_kj) = ({p_ik}, {p_kj}):")
    for g in (prefjax.logistic, prefjax.probit, mine):
        s = prefjax.sensitivity(g, p_ik, p_kj)
        print(
            f"  {g.name:9s} p_ij = {float(s.p_ij):.4f}   dp_ij/dp_ik = {float(s.d_ik):8.3f}"
            f"   dp_ij/dp_kj = {float(s.d_kj):7.3f}"
        )

    print("\nArea of the M-sensitive region A(Omega_M(p_ij, p_ik)):")
    for M in (2.0, 10.0, 100.0):
        areas = {g.name: prefjax.region_area(g, M).value for g in (prefjax.logistic, mine)}
        print(f"  M = {M:5g}: " + "  ".join(f"{k} {v:.3e}" for k, v in areas.items()))

    w = prefjax.theorem1_witness(mine, 1e3)
    print(
        f"\nTheorem 1 for M = 1000: every p_ik in ({w.p0:.6f}, 1) on the curve "
        f"p_kj = g(g^-1(1 - p_ik) + {w.delta}) is 1000-sensitive: "
        f"min |dp_ij/dp_ik| / M = {w.verify(1000):.4f} (> 1)."
    )


if __name__ == "__main__":
    main()
