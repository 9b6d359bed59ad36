"""The worked examples of convolution in "5 Convolutional Neural Networks", recomputed.

1. Moving average: ``x = [1 2 3 1 2 3 1 2 3]``, ``h = [1 1 1] / 3`` with padding 2 / stride 1
   (length 11), padding 0 / stride 1 (length 7) and padding 1 / stride 2 (length 5), each from
   the Toeplitz matrix ``jcnn.signal.conv_matrix``, a 1-D ``Conv`` layer and the output-size
   formula ``(n + 2P - k) / S + 1``.
2. Dice: ``X`` pays 1, 2, 3 with probabilities 1/4, 1/2, 1/4, ``Y`` is a fair die; the pmf of
   ``Z = X + Y`` is the convolution of the two pmfs (the course works out p(2) = 1/24,
   p(4) = 1/6, p(9) = 1/24), checked against exact fractions.
3. Polynomials: the coefficients of ``x(t) y(t)`` (degrees 2 and 5) are the convolution of the
   coefficient vectors, ``z = T(x) y`` with the 8x6 Toeplitz matrix ``T(x)`` (and
   ``z = T(y) x`` with the 8x3 ``T(y)``), from ``conv_matrix(..., flip=True)``.
4. LTI systems: the response to a unit impulse is the kernel (the impulse response); every
   output is the sum of shifted, scaled impulse responses; linearity and time invariance hold;
   convolution commutes and correlation does not (that check's difference is expected to be
   large: swapping the arguments of a correlation reverses it, which is checked too).

    python -m experiments.convolution_math [--seed N] [--out DIR]

Nothing is trained and no data are read: only ``--out`` and ``--seed`` (the random signals of
the LTI checks) are taken. Prints the tables; writes ``results.json`` and ``convolution_math.png`` (the moving averages,
the pmf of Z, the Toeplitz matrix T(x) and an impulse response) in ``--out``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from jcnn import layers as L
from jcnn import shapes, signal

X_MA = [1, 2, 3, 1, 2, 3, 1, 2, 3]
H_MA = [1 / 3, 1 / 3, 1 / 3]
MA_CASES = ((2, 1), (0, 1), (1, 2))  # (padding P, stride S) of the course's three tables
P_X = {1: Fraction(1, 4), 2: Fraction(1, 2), 3: Fraction(1, 4)}
P_Y = {k: Fraction(1, 6) for k in range(1, 7)}
POLY_X = [2, -1, 3]  # x0 + x1 t + x2 t^2
POLY_Y = [1, 4, 0, -2, 5, 1]  # y0 + ... + y5 t^5


NONZERO_EXPECTED = {
    "correlation_commutes": "correlation does not commute: swapping its arguments reverses "
    "the result, as the next check shows",
}
"""The LTI checks whose expected max |difference| is not 0, and why."""
ZERO_BELOW = 1e-9  # float64 round-off of these small sums is ~1e-16
NONZERO_ABOVE = 1e-3


def frac(v: float) -> str:
    """A float as a short fraction string (``0.3333`` -> ``"1/3"``)."""
    return str(Fraction(v).limit_denominator(1000))


def moving_average() -> list[dict[str, Any]]:
    """The three moving-average tables: values from the Toeplitz matrix and from a Conv layer."""
    x = np.asarray(X_MA, np.float64)
    rows = []
    for pad, stride in MA_CASES:
        t = signal.conv_matrix(np.asarray(H_MA), len(x), stride=stride, padding=pad)
        y = t @ x
        conv = L.Conv(1, (3,), stride=stride, padding=pad)
        params = {"kernel": jnp.full((3, 1, 1), 1 / 3, jnp.float32), "bias": jnp.zeros((1,))}
        y_layer = np.asarray(conv.apply(params, {}, jnp.asarray(x, jnp.float32)[:, None])[0][:, 0])
        rows.append(
            {
                "padding": pad,
                "stride": stride,
                "formula_length": (len(x) + 2 * pad - 3) // stride + 1,
                "conv_output_size": shapes.conv_output_size(len(x), 3, stride, pad),
                "values": y.tolist(),
                "fractions": [frac(v) for v in y],
                "max_difference_conv_layer": float(np.abs(y - y_layer).max()),
            }
        )
    return rows


def dice() -> dict[str, Any]:
    """pmf of Z = X + Y by ``jcnn.signal.convolve`` (float64) and by exact fractions."""
    px = np.array([float(P_X.get(k, 0)) for k in range(4)])  # index = value, from 0
    py = np.array([float(P_Y.get(k, 0)) for k in range(7)])
    with jax.enable_x64(True):
        pz = np.asarray(signal.convolve(px, py))  # index = value of Z
    exact = {
        t: sum((P_X[a] * P_Y[t - a] for a in P_X if t - a in P_Y), Fraction(0))
        for t in range(2, 10)
    }
    support = [t for t in range(len(pz)) if pz[t] > 1e-12]
    return {
        "support": support,
        "pmf": {t: float(pz[t]) for t in support},
        "pmf_fractions": {t: str(exact[t]) for t in exact},
        "max_error_vs_fractions": float(max(abs(pz[t] - float(exact[t])) for t in exact)),
        "total": float(pz.sum()),
        "course_values": {"2": "1/24", "4": "1/6", "9": "1/24"},
        "course_values_match": all(
            exact[t] == Fraction(v) for t, v in ((2, "1/24"), (4, "1/6"), (9, "1/24"))
        ),
    }


def polynomials() -> dict[str, Any]:
    """Coefficients of x(t) y(t) three ways, and the Toeplitz matrices T(x) (8x6), T(y) (8x3)."""
    x, y = np.asarray(POLY_X, np.float64), np.asarray(POLY_Y, np.float64)
    t_x = signal.conv_matrix(x, len(y), padding="FULL", flip=True)
    t_y = signal.conv_matrix(y, len(x), padding="FULL", flip=True)
    z = t_x @ y
    z_sums = [
        sum(x[i] * y[t - i] for i in range(len(x)) if 0 <= t - i < len(y))
        for t in range(len(x) + len(y) - 1)
    ]
    with jax.enable_x64(True):
        z_conv = np.asarray(signal.convolve(x, y))
    z_numpy = np.polynomial.polynomial.polymul(x, y)
    toeplitz = all(
        t_x[i, j] == (x[i - j] if 0 <= i - j < len(x) else 0.0)
        for i in range(t_x.shape[0])
        for j in range(t_x.shape[1])
    )
    return {
        "x": POLY_X,
        "y": POLY_Y,
        "z": z.tolist(),
        "T_x": t_x.tolist(),
        "T_y": t_y.tolist(),
        "T_x_shape": list(t_x.shape),
        "T_y_shape": list(t_y.shape),
        "T_x_is_course_toeplitz": bool(toeplitz),
        "max_difference": float(
            max(
                np.abs(z - z_sums).max(),
                np.abs(z - z_conv).max(),
                np.abs(z - z_numpy).max(),
                np.abs(z - t_y @ x).max(),
            )
        ),
    }


def lti(rng: np.random.Generator) -> dict[str, Any]:
    """Impulse response, superposition, linearity, time invariance and (non-)commutativity."""
    h = np.array([0.5, 0.3, 0.2])
    n = 12
    delta = np.zeros(n)
    delta[0] = 1.0
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    a, b = 2.0, -0.5
    with jax.enable_x64(True):

        def system(sig: np.ndarray) -> np.ndarray:
            return np.asarray(signal.convolve(sig, h))  # an LTI system: y = x * h

        response = system(delta)
        superposed = sum(x1[tau] * np.roll(np.pad(h, (0, n - 1)), tau) for tau in range(n))
        shift = 3
        shifted_in = np.concatenate([np.zeros(shift), x1])  # x(t - 3)
        shifted_out = np.concatenate([np.zeros(shift), system(x1)])  # y(t - 3)
        g = rng.standard_normal(4)
        errors = {
            "impulse_response_minus_kernel": float(np.abs(response[: len(h)] - h).max()),
            "impulse_response_tail": float(np.abs(response[len(h) :]).max()),
            "superposition": float(np.abs(system(x1) - superposed).max()),
            "linearity": float(
                np.abs(system(a * x1 + b * x2) - a * system(x1) - b * system(x2)).max()
            ),
            "time_invariance": float(np.abs(system(shifted_in) - shifted_out).max()),
            "convolution_commutes": float(
                np.abs(
                    np.asarray(signal.convolve(x1, g)) - np.asarray(signal.convolve(g, x1))
                ).max()
            ),
            "correlation_commutes": float(
                np.abs(
                    np.asarray(signal.correlate(x1, g, "full"))
                    - np.asarray(signal.correlate(g, x1, "full"))
                ).max()
            ),
            "correlation_swapped_is_reversed": float(
                np.abs(
                    np.asarray(signal.correlate(x1, g, "full"))[::-1]
                    - np.asarray(signal.correlate(g, x1, "full"))
                ).max()
            ),
        }
    expected = {k: "non-zero" if k in NONZERO_EXPECTED else "0" for k in errors}
    as_expected = {
        k: v > NONZERO_ABOVE if expected[k] == "non-zero" else v < ZERO_BELOW
        for k, v in errors.items()
    }
    return {
        "h": h.tolist(),
        "impulse_response": response.tolist(),
        "max_errors": errors,
        "expected": expected,
        "as_expected": as_expected,
        "all_as_expected": all(as_expected.values()),
        "note": NONZERO_EXPECTED["correlation_commutes"],
    }


def plot(ma: list[dict], dice_: dict, poly: dict, lti_: dict, path: Any) -> None:
    """Four panels (2x2): moving averages, pmf of Z, T(x), impulse response."""
    from matplotlib.ticker import MaxNLocator

    from jcnn.course.viz import plt

    fig, axes = plt.subplots(2, 2, figsize=(11.5, 8.2), layout="constrained")
    ax = axes[0, 0]
    ax.plot(range(1, len(X_MA) + 1), X_MA, "k.-", label=f"x = {X_MA}")
    for row in ma:
        ax.plot(
            range(1, len(row["values"]) + 1),
            row["values"],
            "o-",
            label=f"P={row['padding']}, S={row['stride']}: length {len(row['values'])}",
        )
    ax.set_title("moving average y = x * h, h = [1 1 1]/3\n(padding P, stride S)", fontsize=10)
    ax.set_xlabel("index t (from 1, as in the course's tables)")
    ax.set_ylabel("value")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[0, 1]
    support = dice_["support"]
    ax.bar(support, [dice_["pmf"][t] for t in support])
    for t in support:
        ax.text(t, dice_["pmf"][t], dice_["pmf_fractions"][t], ha="center", va="bottom", fontsize=8)
    ax.set_title(
        "pmf of Z = X + Y = p_X * p_Y\n(X pays 1, 2, 3 w.p. 1/4, 1/2, 1/4; Y a fair die)",
        fontsize=10,
    )
    ax.set_xlabel("z")
    ax.set_ylabel("probability p(z)")
    ax.set_ylim(0, max(dice_["pmf"].values()) * 1.15)
    ax = axes[1, 0]
    t_x = np.asarray(poly["T_x"])
    bound = np.abs(t_x).max()
    image = ax.imshow(t_x, cmap="coolwarm", vmin=-bound, vmax=bound)
    for (i, j), v in np.ndenumerate(t_x):
        ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=8)
    ax.set_title(
        f"Toeplitz matrix T(x), x = {poly['x']}\nz = T(x) y: coefficients of x(t) y(t)",
        fontsize=10,
    )
    ax.set_xlabel("column j (multiplies y_j)")
    ax.set_ylabel("row i (gives z_i)")
    ax.set_xticks(range(t_x.shape[1]))
    ax.set_yticks(range(t_x.shape[0]))
    fig.colorbar(image, ax=ax, shrink=0.85, label="entry of T(x)")
    ax = axes[1, 1]
    resp = lti_["impulse_response"]
    ax.stem(range(len(resp)), resp)
    ax.set_title(
        f"impulse response of y = x * h, h = {lti_['h']}\n(the response to a unit impulse "
        "is the kernel)",
        fontsize=10,
    )
    ax.set_xlabel("t")
    ax.set_ylabel("y[t] for x = unit impulse at t = 0")
    for ax in (axes[0, 0], axes[0, 1], axes[1, 1]):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle('Worked examples of convolution ("5 Convolutional Neural Networks")')
    common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    """Computes and prints the four examples; returns the summary written to ``results.json``."""
    p = common.parser(
        "convolution_math",
        __doc__.splitlines()[0],
        data=False,
        seed="seed of the random test signals of the LTI checks (default 0)",
    )
    args = p.parse_args(argv)
    out = common.output_dir(args.out)

    ma = moving_average()
    print(f"moving average of x = {X_MA} with h = [1 1 1]/3")
    for row in ma:
        print(
            f"  P={row['padding']} S={row['stride']}: length {len(row['values'])} (formula "
            f"{row['formula_length']}): {' '.join(row['fractions'])}"
        )
    dz = dice()
    print("pmf of Z = X + Y:  z     " + " ".join(f"{t:>5}" for t in dz["support"]))
    print(
        "                   p(z)  "
        + " ".join(f"{dz['pmf_fractions'][t]:>5}" for t in dz["support"])
    )
    poly = polynomials()
    print(f"x(t) y(t) with x = {POLY_X}, y = {POLY_Y}: z = {[frac(v) for v in poly['z']]}")
    print("T(x) =")
    for row in poly["T_x"]:
        print("  " + " ".join(f"{v:>4g}" for v in row))
    lti_ = lti(np.random.default_rng(args.seed))
    print(
        f"impulse response of y = x * h, h = {lti_['h']}: "
        f"{[round(v, 12) for v in lti_['impulse_response']]}"
    )
    print("LTI checks: max |difference| between the two sides (float64), and what is expected")
    for k, v in lti_["max_errors"].items():
        verdict = "ok" if lti_["as_expected"][k] else "FAILED"
        why = f" ({NONZERO_EXPECTED[k]})" if k in NONZERO_EXPECTED else ""
        print(f"  {k:32s} {v:.1e}  expected {lti_['expected'][k]}: {verdict}{why}")

    plot(ma, dz, poly, lti_, out / "convolution_math.png")
    summary = {"moving_average": ma, "dice": dz, "polynomials": poly, "lti": lti_}
    common.write_json(out / "results.json", summary)
    lengths = "/".join(str(len(r["values"])) for r in ma)
    print(
        f"moving averages of lengths {lengths}; p(2), p(4), p(9) = {dz['pmf_fractions'][2]}, "
        f"{dz['pmf_fractions'][4]}, {dz['pmf_fractions'][9]} (course: 1/24, 1/6, 1/24); "
        f"T(x) {poly['T_x_shape'][0]}x{poly['T_x_shape'][1]}; impulse response = kernel to "
        f"{lti_['max_errors']['impulse_response_minus_kernel']:.0e}; LTI checks "
        f"{'all as expected' if lti_['all_as_expected'] else 'NOT all as expected'} "
        f"(correlation does not commute: difference "
        f"{lti_['max_errors']['correlation_commutes']:.1f}); outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
