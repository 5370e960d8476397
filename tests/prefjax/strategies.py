"""hypothesis strategies that reach the extremes: probabilities within 1e-12 of 0 and 1."""

from hypothesis import strategies as st

EXTREME = 1e-12

# Uniform on (1e-12, 1 - 1e-12), log-uniform towards 0 and towards 1, and the end points.
probabilities = st.one_of(
    st.floats(EXTREME, 1 - EXTREME),
    st.floats(-12.0, -0.31).map(lambda e: 10.0**e),
    st.floats(-12.0, -0.31).map(lambda e: 1.0 - 10.0**e),
    st.sampled_from([EXTREME, 1 - EXTREME, 0.5]),
)

# Score differences whose probabilities stay inside [1e-12, 1 - 1e-12] for every link here
# (the cauchit's tails are the widest: |x| up to ~3e11).
scores = st.floats(-25.0, 25.0)
