"""A memory-bounded LRU of prompt prefixes (:class:`~lrpt.prefix.PrefixState`).

A server with thousands of prompts cannot keep every prompt's keys/values: each costs
``2 × layers × kv_heads × head_dim × (n + 1)`` numbers. :class:`PrefixCache` keeps the most
recently used ones under a byte cap and computes a missing one on first use; it counts hits,
misses and evictions for monitoring.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from lrpt.prefix import PrefixState


def state_bytes(state: PrefixState) -> int:
    """Bytes held by a prefix state's tensors."""
    tensors = [*state.keys, *state.values, state.last_logits]
    if state.lead_logits is not None:
        tensors.append(state.lead_logits)
    return sum(t.numel() * t.element_size() for t in tensors)


class PrefixCache:
    """Least-recently-used prefix states under ``max_bytes`` (at least the newest one is kept).

    Raises:
        ValueError: a negative ``max_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"the prefix cache's cap must be ≥ 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self._states: OrderedDict[Hashable, tuple[PrefixState, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._states

    def get(self, key: Hashable, compute: Callable[[], PrefixState]) -> PrefixState:
        """The state under ``key``, computed by ``compute()`` (and kept) if absent."""
        with self._lock:
            found = self._states.get(key)
            if found is not None:
                self._states.move_to_end(key)
                self.hits += 1
                return found[0]
            self.misses += 1
        state = compute()
        size = state_bytes(state)
        with self._lock:
            if key not in self._states:
                self._states[key] = (state, size)
                self.bytes += size
            self._evict(keep=key)
        return state

    def discard(self, match: Callable[[Hashable], bool]) -> int:
        """Drop every state whose key ``match``es; → how many were dropped."""
        with self._lock:
            gone = [key for key in self._states if match(key)]
            for key in gone:
                self.bytes -= self._states.pop(key)[1]
            return len(gone)

    def _evict(self, keep: Hashable) -> None:
        while self.bytes > self.max_bytes and len(self._states) > 1:
            key = next(iter(self._states))
            if key == keep:
                self._states.move_to_end(key)
                continue
            self.bytes -= self._states.pop(key)[1]
            self.evictions += 1
