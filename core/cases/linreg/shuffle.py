"""The shuffled epochs' batch means in one compiled pass: torch's randperm, drawn from the run's own
torch.Generator's stream, fused with the sums over each batch.

Why: a sweep on the same number of optimizer steps for every batch size (`budget = steps`, the
"fixed" preset) shuffles ~2.5e8 sample positions; drawn with `torch.randperm` (4.4 us for 1000
samples) into an index array, then gathered and summed by numpy, that was 1.5 s of a 1.8 s sweep on
the 2-core Xeon. Here each position is drawn, swapped and added into its batch's sums at once.

The numbers are torch's own: the generator's Mersenne Twister state is read from `get_state()`, each
permutation is drawn as CPU randperm draws it (for i < n - 1: z = random() % (n - i), swap r[i] and
r[i + z]; `random()` the 32-bit MT19937 output) and the state is written back after, so the generator
continues as if torch had drawn them. `available()` checks that once per process against torch itself
(a torch whose state layout or randperm differs takes numpy's path instead); tests/test_linreg.py
compares whole streams with `epoch_orders`.

The batch sums are added in the permutation's order (numpy's reduceat, the path without numba, adds
in another order: the two agree to rounding), the first batch as the data's total minus the others
(which halves the work when a batch is most of the data), as that path takes it.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from core.kernels import _jit as _kernel_jit
from core.kernels import numba

_jit = functools.partial(_kernel_jit, fastmath=False)  # the sums in the order written, on every CPU


N, M = 624, 397  # MT19937's state size and shift
STATE_AT = 24  # CPUGeneratorImplStateLegacy: seed u64, left i32, seeded i32, next u64, then state[624] u64
STATE_BYTES = STATE_AT + 8 * N  # then normal_x, y, rho, is_valid, the float normal and its flag: 40 bytes


@_jit
def _twist(mt):
    for i in range(N):
        y = (mt[i] & 0x80000000) | (mt[(i + 1) % N] & 0x7FFFFFFF)
        v = mt[(i + M) % N] ^ (y >> 1)
        if y & 1:
            v ^= 0x9908B0DF
        mt[i] = v


@_jit
def _shuffled_sums(table, total, mt, at, bs, epochs, order, sums):
    """`epochs` permutations of range(n) from the MT19937 state mt (int64[624], next output at[0]; 624:
    twist first), each one's batch sums (of table's rows (n, 5), batches of bs) into sums (epochs, nb, 5);
    the last permutation is left in order. mt and at[0] advance as torch's generator would."""
    n = table.shape[0]
    nb = sums.shape[1]
    k = at[0]
    inverse = np.empty(n)  # 1 / (n - i): y % (n - i) by a multiplication, corrected to the exact remainder
    for i in range(n):
        inverse[i] = 1.0 / (n - i)
    for e in range(epochs):
        for i in range(n):
            order[i] = i
        for j in range(nb):
            for c in range(5):
                sums[e, j, c] = 0.0
        for i in range(n - 1):
            if k >= N:
                _twist(mt)
                k = 0
            y = mt[k]
            k += 1
            y ^= y >> 11
            y ^= (y << 7) & 0x9D2C5680
            y ^= (y << 15) & 0xEFC60000
            y ^= y >> 18
            d = n - i
            q = np.int64(y * inverse[i])  # y < 2^32: off by at most one
            r = y - q * d
            if r < 0:
                r += d
            elif r >= d:
                r -= d
            z = i + r
            s = order[z]
            order[z] = order[i]
            order[i] = s
            if i >= bs:
                j = i // bs
                for c in range(5):
                    sums[e, j, c] += table[s, c]
        if n - 1 >= bs:
            j = (n - 1) // bs
            for c in range(5):
                sums[e, j, c] += table[order[n - 1], c]
        for c in range(5):  # the first batch: the total minus the others, those summed in order
            rest = 0.0
            for j in range(1, nb):
                rest += sums[e, j, c]
            sums[e, 0, c] = total[c] - rest
    at[0] = k


def _state(generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (the state's bytes, a copy to write back into; mt int64[624]; at: the next output's index)."""
    raw = generator.get_state().numpy().copy()
    left = int(raw[8:12].view(np.int32)[0])
    mt = raw[STATE_AT:STATE_BYTES].view(np.uint64).astype(np.int64)
    return raw, mt, np.array([N + 1 - left], dtype=np.int64)  # torch twists when `left` counts down to 0


def _put_state(generator: torch.Generator, raw: np.ndarray, mt: np.ndarray, at: np.ndarray) -> None:
    raw[8:12] = np.array([N + 1 - int(at[0])], dtype=np.int32).view(np.uint8)
    raw[16:24] = np.array([int(at[0]) % N], dtype=np.uint64).view(np.uint8)
    raw[STATE_AT:STATE_BYTES] = mt.astype(np.uint64).view(np.uint8)
    generator.set_state(torch.from_numpy(raw))


def shuffled_sums(table: np.ndarray, bs: int, epochs: int, generator: torch.Generator):
    """-> (sums (epochs, nb, 5), the last epoch's order (n,) int64): the next `epochs` shuffled epochs of
    `generator`'s stream (as `data.epoch_orders` draws them), each batch's sums of table's rows."""
    n = len(table)
    raw, mt, at = _state(generator)
    order = np.empty(n, dtype=np.int64)
    sums = np.empty((epochs, -(-n // bs), 5))
    _shuffled_sums(table, table.sum(0), mt, at, bs, epochs, order, sums)
    _put_state(generator, raw, mt, at)
    return sums, order


@functools.cache
def available() -> bool:
    """numba there, and this torch's generator state and randperm the ones emulated (checked once)."""
    if numba is None or len(torch.Generator().get_state()) != STATE_BYTES + 40:
        return False
    try:
        for n, bs, skip in ((7, 3, 0), (1000, 64, 2)):  # one draw that twists first, one mid-state
            ours, ref = torch.Generator().manual_seed(11 + n), torch.Generator().manual_seed(11 + n)
            for _ in range(skip):
                torch.randperm(n, generator=ours), torch.randperm(n, generator=ref)
            _, order = shuffled_sums(np.zeros((n, 5)), bs, 2, ours)
            torch.randperm(n, generator=ref)
            if not np.array_equal(order, torch.randperm(n, generator=ref).numpy()):
                return False
            if not torch.equal(torch.randperm(n, generator=ours), torch.randperm(n, generator=ref)):
                return False
        return True
    except (RuntimeError, ValueError, IndexError):  # a state torch refuses: numpy's path, always right
        return False
