"""SHA-256 fingerprints of tensors, to check that a regenerated or reloaded tensor is the same."""

from __future__ import annotations

import hashlib

import torch


def tensor_fingerprint(tensor: torch.Tensor) -> str:
    """SHA-256 hex digest of ``tensor``'s little-endian float32 bytes in row-major order.

    The same on every machine: values are cast to float32 first (so a float64 copy of a float32
    tensor has the same fingerprint) and laid out little-endian whatever the native byte order.
    """
    array = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(array.astype("<f4").tobytes()).hexdigest()
