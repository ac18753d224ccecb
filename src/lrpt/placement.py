"""Where the frozen model runs and in which precision: device and dtype names, resolved and checked.

Devices: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` and ``mps``. An
unavailable device is a ``ValueError`` that names it and the devices this machine has.

Dtypes of the frozen base: ``auto`` (float32 on CPU and MPS; bfloat16 on a CUDA device that
supports it, else float32), ``float32``, ``bfloat16`` and ``float16``. Whatever the base's dtype,
a prompt's trainable tensors stay float32 (master weights) and are cast where they enter the
model; artifacts are float32.
"""

from __future__ import annotations

import re

import torch

DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DTYPE_CHOICES = ("auto", *DTYPES)
HALF = (torch.bfloat16, torch.float16)  # the half-precision dtypes a frozen base may have
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` has one of the forms of :data:`DEVICE_FORMS` (its
    availability is checked by :func:`resolve_device`)."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ValueError(f"device must be one of {', '.join(DEVICE_FORMS)}; got {name!r}")


def check_dtype_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is one of :data:`DTYPE_CHOICES`."""
    if name not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}; got {name!r}")


def available_devices() -> list[str]:
    """The devices this machine has: ``cpu``, ``cuda:0`` … and ``mps``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device ``device`` names (None = ``auto``).

    Raises:
        ValueError: a malformed name, or a device this machine does not have.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device_name(device)
    have = available_devices()
    if device == "cpu":
        return torch.device("cpu")
    if device == "mps" and "mps" in have:
        return torch.device("mps")
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.partition(":")[2] or torch.cuda.current_device())
        if index < torch.cuda.device_count():
            return torch.device("cuda", index)
    build = f"torch {torch.__version__}" + (
        " (a build without CUDA)" if torch.version.cuda is None else ""
    )
    raise ValueError(
        f"device {device!r} is not available on this machine ({build}); available: "
        f"{', '.join(have)} (or auto)"
    )


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The frozen base's dtype that ``dtype`` names on ``device`` (None = ``auto``: float32 on
    CPU and MPS, bfloat16 on CUDA where supported, else float32).

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype}")
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    check_dtype_name(dtype)
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` → ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")
