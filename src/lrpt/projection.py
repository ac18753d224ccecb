"""Portable seeded random matrices: bit-identical on every machine, OS, device and library version.

ULPT's up-projection ``Â`` is never stored: it is regenerated from a seed. torch's and numpy's
random streams differ across devices and versions, so the values here come from a fully specified
counter-based generator that uses only 64-bit integer arithmetic and exactly rounded float32 steps.

Algorithm (all integer arithmetic modulo 2**64):

1. ``mix64(z)``: the SplitMix64 finaliser (Steele, Lea & Flood 2014; Stafford's "Mix13")::

       z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
       z = (z ^ (z >> 27)) * 0x94D049BB133111EB
       z =  z ^ (z >> 31)

2. ``splitmix64(state, i) = mix64(state + (i + 1) * 0x9E3779B97F4A7C15)``: the ``i``-th output
   (from 0) of the standard SplitMix64 sequence seeded with ``state``. It is counter-based: any
   element is computed from its index alone.
3. Stream key of tensor ``(seed, stream, group)``:
   ``key = splitmix64(splitmix64(seed, stream), group)``. Stream 0 is the projection ``Â``,
   stream 1 the frozen latent ``Z`` (ULPT's ``train_projection`` ablation); ``group`` numbers
   the projections of ULPT's ``groups`` option.
4. Element ``k`` of a tensor (row-major flat index) draws ``x_k = splitmix64(key, k)``.
5. Uniform: ``u = (x >> 40) · 2**-24`` — the top 24 bits, exact in float32, in ``[0, 1)``.
6. ``U(±a)``: ``a = float32(sqrt(6.0 / (r + d)))`` (Xavier-uniform bound; the division and
   square root in IEEE double, both correctly rounded, then rounded to the nearest float32) and
   ``value = float32((2u − 1) · a)``. ``2u − 1 = (top24 − 2**23) / 2**23`` is exact in float32,
   so the final float32 multiply (round to nearest even) is the only rounding step. Values lie
   in ``[−a, a]``.
7. Approximately ``N(0, 1)`` (for the frozen latent): the Irwin–Hall sum of 12 uniforms minus 6,
   ``value = float32(Σ_{j<12} top24(x_{12k+j}) − 6·2**24) · 2**-24``: an integer sum, one
   rounding to float32, then an exact power-of-two scaling. Mean 0, variance 1, bounded by ±6.
   (Box–Muller needs ``log``/``cos``, whose last bits differ between math libraries and SIMD
   paths, so it cannot be bit-identical everywhere.)

:func:`projection_fingerprint` is the SHA-256 of a tensor's little-endian float32 bytes (row-major).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lrpt.fingerprint import tensor_fingerprint

# SHA-256 of a tensor's little-endian float32 bytes (row-major): the fingerprint ``extra_state``
# records of a regenerated projection
projection_fingerprint = tensor_fingerprint

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MUL1 = np.uint64(0xBF58476D1CE4E5B9)
MUL2 = np.uint64(0x94D049BB133111EB)
STREAM_PROJECTION = 0
STREAM_LATENT = 1
_U64 = 2**64


def mix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser of each ``uint64`` in ``z`` (a bijection of 64-bit words)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * MUL1
        z = (z ^ (z >> np.uint64(27))) * MUL2
    return z ^ (z >> np.uint64(31))


def splitmix64(state: int, index: np.ndarray) -> np.ndarray:
    """Outputs ``index`` (0-based ``uint64`` array) of the SplitMix64 sequence seeded ``state``."""
    index = np.asarray(index, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(state % _U64) + (index + np.uint64(1)) * GOLDEN
    return mix64(z)


def stream_key(seed: int, stream: int, group: int = 0) -> int:
    """The 64-bit key of tensor ``(seed, stream, group)`` (step 3 of the module docstring)."""
    for value, name in ((seed, "seed"), (stream, "stream"), (group, "group")):
        if not 0 <= value < _U64:
            raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    first = int(splitmix64(seed, np.array([stream]))[0])
    return int(splitmix64(first, np.array([group]))[0])


def random_bits(seed: int, count: int, *, stream: int, group: int = 0) -> np.ndarray:
    """``count`` raw 64-bit words ``x_0 … x_{count-1}`` of tensor ``(seed, stream, group)``."""
    key = stream_key(seed, stream, group)
    return splitmix64(key, np.arange(count, dtype=np.uint64))


def _top24(bits: np.ndarray) -> np.ndarray:
    return (bits >> np.uint64(40)).astype(np.int64)  # integers in [0, 2**24)


def uniform01(seed: int, count: int, *, stream: int, group: int = 0) -> np.ndarray:
    """``count`` float32 uniforms in ``[0, 1)`` (step 5)."""
    top = _top24(random_bits(seed, count, stream=stream, group=group))
    return top.astype(np.float32) * np.float32(2.0**-24)


def xavier_bound(rows: int, cols: int) -> np.float32:
    """``float32(sqrt(6 / (rows + cols)))``: Xavier-uniform bound of a ``rows × cols`` matrix."""
    return np.float32(math.sqrt(6.0 / float(rows + cols)))


def projection_matrix(seed: int, rows: int, cols: int, *, group: int = 0) -> torch.Tensor:
    """``(rows, cols)`` float32 ``U(±sqrt(6 / (rows + cols)))`` from ``seed`` (stream 0)."""
    top = _top24(random_bits(seed, rows * cols, stream=STREAM_PROJECTION, group=group))
    centred = (top - 2**23).astype(np.float32) * np.float32(2.0**-23)  # 2u − 1, exact
    values = centred * xavier_bound(rows, cols)  # the one float32 rounding
    return torch.from_numpy(values.astype(np.float32).reshape(rows, cols))


def latent_matrix(seed: int, rows: int, cols: int) -> torch.Tensor:
    """``(rows, cols)`` float32 Irwin–Hall(12) − 6 ≈ ``N(0, 1)`` from ``seed`` (stream 1)."""
    count = rows * cols
    top = _top24(random_bits(seed, 12 * count, stream=STREAM_LATENT)).reshape(count, 12)
    total = top.sum(axis=1) - 6 * 2**24  # exact integers, |total| ≤ 6·2**24
    values = total.astype(np.float64).astype(np.float32) * np.float32(2.0**-24)
    return torch.from_numpy(values.reshape(rows, cols))


def check_fingerprint(tensor: torch.Tensor, expected: str, what: str = "projection") -> None:
    """Raise ``ValueError`` unless ``tensor``'s fingerprint is ``expected``."""
    actual = projection_fingerprint(tensor)
    if actual != expected:
        raise ValueError(
            f"the regenerated {what} does not match the stored one: SHA-256 {actual} ≠ {expected}; "
            "the prompt would silently differ"
        )
