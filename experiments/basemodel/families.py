"""The families of two-variable numeric sequences the base is pretrained on: general, not the task.

Qwen2.5 was pretrained on text full of numbers but had not seen these predator–prey systems;
the stand-in must be the same, or fine-tuning has nothing left to teach. So the base reads
sequences of many other kinds, and Lotka–Volterra only far outside the real data's ranges.
Every family is a function ``(rng, n, time) -> float64 (n, T, 2)`` of non-negative values
(one table, :data:`FAMILIES`, fvcore-style); ``time`` is the real data's grid (0..200, 100 steps).

====================  ==================================================================
family                what and its ranges (uniform unless said; P a period in time units)
====================  ==================================================================
sinusoids             per variable 1–3 sines, P log-uniform 8–200, amplitude 0.2–3,
                      Gaussian noise 0–10 % of the summed amplitude
oscillator            damped (ζ 0–0.3) and, for half, forced (F 0–1, Ω/ω 0.5–1.5)
                      linear oscillator, P 10–120; variables position and velocity/ω
random_walk           two correlated (ρ −0.8–0.8) Gaussian walks, step σ 0.05–0.5, drift
                      ±0.05; for half the exponential of the walk (a geometric walk)
ornstein_uhlenbeck    exact OU steps, θ 0.01–0.5, μ 1–5, σ 0.05–1, noise correlation ±0.8
van_der_pol           μ 0.2–4, time scale ω 0.06–0.4, start in [−2, 2]²
fitzhugh_nagumo       ε 0.04–0.2, current I 0–1 (a = 0.7, b = 0.8), time scale ω 0.3–1.5
sir                   susceptible and infected with waning immunity ξ 0–0.02; β 0.1–1,
                      γ 0.02–0.2, first infected 0.1–5 %, population 1–20
lotka_volterra_far    logistic LV (``lvdata.simulate``'s model) with every parameter either
                      1.5–4× the real range's maximum or 0.1–0.5× its minimum, start 0.2–3
====================  ==================================================================

Families that can go negative are shifted per variable so their minimum is a random 2–100 %
of their spread above zero: the LLMTIME alphabet has no minus sign.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lvdata.simulate import PARAM_RANGES, LVParams, simulate_systems

Family = Callable[[np.random.Generator, int, np.ndarray], np.ndarray]
SUBSTEPS = 40  # RK4 steps per output step (0.05 time units on the real grid)


def rk4(rhs: Callable[[np.ndarray], np.ndarray], state: np.ndarray, time: np.ndarray,
        substeps: int = SUBSTEPS) -> np.ndarray:
    """Integrate ``n`` autonomous systems at once with fixed-step RK4; ``state (n, d)`` at
    ``time[0]``; returns ``(n, T, d)`` at ``time``."""
    out = np.empty((state.shape[0], len(time), state.shape[1]))
    out[:, 0] = state
    for i in range(len(time) - 1):
        h = (time[i + 1] - time[i]) / substeps
        for _ in range(substeps):
            k1 = rhs(state)
            k2 = rhs(state + h / 2 * k1)
            k3 = rhs(state + h / 2 * k2)
            k4 = rhs(state + h * k3)
            state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out[:, i + 1] = state
    return out


def shift_positive(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x (n, T, 2)`` moved per sequence and variable so its minimum is 2–100 % of its spread."""
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)  # (n, 1, 2)
    spread = np.maximum(high - low, 1e-3)
    return x - low + rng.uniform(0.02, 1.0, size=low.shape) * spread


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return rng.uniform(low, high, size=n)[:, None]  # (n, 1): broadcasts over time or variables


def sinusoids(rng: np.random.Generator, n: int, time: np.ndarray) -> np.ndarray:
    out = np.zeros((n, len(time), 2))
    for variable in range(2):
        terms = rng.integers(1, 4, size=n)
        total_amplitude = np.zeros((n, 1))
        for k in range(3):
            on = (k < terms)[:, None]
            period = np.exp(_uniform(rng, np.log(8), np.log(200), n))
            amplitude = _uniform(rng, 0.2, 3.0, n) * on
            phase = _uniform(rng, 0, 2 * np.pi, n)
            out[:, :, variable] += amplitude * np.sin(2 * np.pi * time / period + phase)
            total_amplitude += amplitude
        out[:, :, variable] += rng.normal(size=(n, len(time))) * _uniform(rng, 0, 0.1, n) * total_amplitude
    return shift_positive(out, rng)


def oscillator(rng: np.random.Generator, n: int, time: np.ndarray) -> np.ndarray:
    omega = 2 * np.pi / _uniform(rng, 10, 120, n)[:, 0]
    zeta = rng.uniform(0, 0.3, n)
    force = rng.uniform(0, 1, n) * (rng.random(n) < 0.5) * omega**2
    drive = omega * rng.uniform(0.5, 1.5, n)

    def rhs(state: np.ndarray) -> np.ndarray:  # state (n, 3): position, velocity, drive phase
        x, v, phase = state.T
        return np.stack([v, force * np.cos(phase) - 2 * zeta * omega * v - omega**2 * x, drive], axis=1)

    start = np.stack([rng.uniform(-2, 2, n), rng.uniform(-2, 2, n) * omega, np.zeros(n)], axis=1)
    path = rk4(rhs, start, time)
    return shift_positive(np.stack([path[..., 0], path[..., 1] / omega[:, None]], axis=-1), rng)


def random_walk(rng: np.random.Generator, n: int, time: np.ndarray) -> np.ndarray:
    rho = rng.uniform(-0.8, 0.8, n)[:, None]
    first, other = rng.normal(size=(2, n, len(time)))
    steps = np.stack([first, rho * first + np.sqrt(1 - rho**2) * other], axis=-1)  # (n, T, 2)
    steps = steps * rng.uniform(0.05, 0.5, (n, 1, 2)) + rng.uniform(-0.05, 0.05, (n, 1, 2))
    walk = np.cumsum(steps, axis=1)
    geometric = (rng.random(n) < 0.5)[:, None, None]
    return np.where(geometric, np.exp(np.clip(walk - walk[:, :1], -5, 5)), shift_positive(walk, rng))


def ornstein_uhlenbeck(rng: np.random.Generator, n: int, time: np.ndarray) -> np.ndarray:
    dt = float(time[1] - time[0])
    theta, mean, sigma = rng.uniform(0.01, 0.5, (n, 2)), rng.uniform(1, 5, (n, 2)), rng.uniform(0.05, 1, (n, 2))
    rho = rng.uniform(-0.8, 0.8, n)[:, None]
    decay = np.exp(-theta * dt)
    spread = sigma * np.sqrt((1 - decay**2) / (2 * theta))
    out = np.empty((n, len(time), 2))
    out[:, 0] = mean + rng.normal(size=(n, 2)) * sigma / np.sqrt(2 * theta)
    for i in range(1, len(time)):
        first, other = rng.normal(size=(2, n))
        noise = np.stack([first, rho[:, 0] * first + np.sqrt(1 - rho[:, 0] ** 2) * other], axis=1)
        out[:, i] = mean + (out[:, i - 1] - mean) * decay + spread * noise
    return shift_positive(out, rng)


def van_der_pol(rng: np.random.Generator, n: int, time: np.ndarray) -> np.ndarray:
    mu, omega = rng.uniform(0.2, 4, n), rng.uniform(0.06, 0.4, n)

    def rhs(state: np.ndarray) -> np.ndarray:
        x, y = state.T
        return omega[:, None] * np.stack([y, mu * (1 - x**2) * y - x], axis=1)

    return shift_positive(rk4(rhs, rng.uniform(-2, 2, (n, 2)), time), rng)


def fitzhugh_nagumo(rng: np.random.Generator, n: int, time: np.ndarray) -> np.ndarray:
    epsilon, current, omega = rng.uniform(0.04, 0.2, n), rng.uniform(0, 1, n), rng.uniform(0.3, 1.5, n)

    def rhs(state: np.ndarray) -> np.ndarray:
        v, w = state.T
        return omega[:, None] * np.stack([v - v**3 / 3 - w + current, epsilon * (v + 0.7 - 0.8 * w)], axis=1)

    return shift_positive(rk4(rhs, rng.uniform(-2, 2, (n, 2)), time), rng)


def sir(rng: np.random.Generator, n: int, time: np.ndarray) -> np.ndarray:
    beta, gamma, waning = rng.uniform(0.1, 1, n), rng.uniform(0.02, 0.2, n), rng.uniform(0, 0.02, n)

    def rhs(state: np.ndarray) -> np.ndarray:
        s, i = state.T
        infections = beta * s * i
        return np.stack([-infections + waning * (1 - s - i), infections - gamma * i], axis=1)

    infected = rng.uniform(0.001, 0.05, n)
    path = rk4(rhs, np.stack([1 - infected, infected], axis=1), time)
    return np.clip(path, 0, None) * rng.uniform(1, 20, (n, 1, 1))


def far_parameters(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 5)`` logistic-LV parameters in ``PARAM_RANGES``' order, each 1.5–4× the real maximum or
    0.1–0.5× the real minimum (even odds)."""
    low, high = np.array(list(PARAM_RANGES.values())).T  # (5,)
    above = rng.random((n, len(low))) < 0.5
    return np.where(above, high * rng.uniform(1.5, 4, (n, len(low))), low * rng.uniform(0.1, 0.5, (n, len(low))))


def lotka_volterra_far(rng: np.random.Generator, n: int, time: np.ndarray) -> np.ndarray:
    """``lvdata.simulate``'s model with :func:`far_parameters`, starting from 0.2–3 for both species."""
    params = [LVParams(*map(float, row)) for row in far_parameters(rng, n)]
    return np.clip(simulate_systems(params, rng.uniform(0.2, 3, (n, 2)), time), 0, None)  # solver undershoot


CORPUS_DESCRIPTION = (
    "general two-variable sequences of 8 families in equal numbers: sinusoid mixtures, damped and forced "
    "oscillators, random and geometric walks, Ornstein-Uhlenbeck, Van der Pol, FitzHugh-Nagumo, SIR with waning "
    "immunity, and Lotka-Volterra only with every parameter 1.5-4x above or 0.1-0.5x below the real data's ranges"
)
FAMILIES: dict[str, Family] = {
    "sinusoids": sinusoids,
    "oscillator": oscillator,
    "random_walk": random_walk,
    "ornstein_uhlenbeck": ornstein_uhlenbeck,
    "van_der_pol": van_der_pol,
    "fitzhugh_nagumo": fitzhugh_nagumo,
    "sir": sir,
    "lotka_volterra_far": lotka_volterra_far,
}


def general_sequences(n: int, seed: int, time: np.ndarray, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(sequences float32 (n, T, 2), family index (n,))``: ``n`` sequences, the families in
    turn (sequence ``i`` of family ``i % len(FAMILIES)``), each family drawn from its own
    generator seeded ``(seed, stream, family index)`` (streams: 0 training, 1 validation); a pure
    function of the arguments."""
    names = list(FAMILIES)
    family = np.arange(n) % len(names)
    out = np.empty((n, len(time), 2), dtype=np.float32)
    for index, name in enumerate(names):
        rows = np.flatnonzero(family == index)
        if rows.size:
            values = FAMILIES[name](np.random.default_rng([seed, stream, index]), rows.size, time)
            if not np.isfinite(values).all() or (values < 0).any():
                raise RuntimeError(f"family {name} made non-finite or negative values (seed {seed})")
            out[rows] = values
    return out, family


__all__ = ["CORPUS_DESCRIPTION", "FAMILIES", "far_parameters", "general_sequences", "rk4", "shift_positive"]
