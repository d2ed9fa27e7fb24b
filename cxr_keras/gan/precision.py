"""The floating-point policy a GAN trains in: the fastest numerics each device has.

``auto`` picks ``mixed_bfloat16`` on a CPU with native bf16 arithmetic (AVX512_BF16 or AMX: the Pix2Pix
step at 256², batch 4, ran 1.55× faster than float32 on such an AMD EPYC, see docs/scaling.md),
``mixed_float16`` with loss scaling on a GPU, and ``float32`` elsewhere (bf16 without native support is
emulated and slower than float32). Variables stay float32 under both mixed policies; the networks cast
their outputs to float32, so losses and the composites' box pixels never pass through 16 bits.
A run records its policy (``precision`` in RUN/config.json); a resume keeps it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, FrozenSet, Optional

import tensorflow as tf

from cxr_keras.config import PRECISIONS  # the --precision choices

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic
# WGAN-GP's gradient penalty (a gradient inside the loss) is not loss-scaled: float16 would underflow it.
NO_FLOAT16 = {"stargan": "StarGAN's WGAN-GP gradient penalty is not loss-scaled"}
CPUINFO = "/proc/cpuinfo"


def cpu_flags(cpuinfo: str = CPUINFO) -> FrozenSet[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(cpuinfo: str = CPUINFO) -> Optional[str]:
    """The flag giving this CPU native bf16 arithmetic (``avx512_bf16`` / ``amx_bf16``), or None."""
    flags = cpu_flags(cpuinfo)
    return next((f for f in BF16_FLAGS if f in flags), None)


def bf16_support(cpuinfo: str = CPUINFO) -> str:
    """One line for logs and benchmarks: whether and why bf16 is native here."""
    flag = native_bf16(cpuinfo)
    return f"native ({flag})" if flag else f"not native (no {' or '.join(BF16_FLAGS)} in {cpuinfo}): emulated, slow"


def gpu_visible() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def resolve(precision: str, model: str = "pix2pix") -> str:
    """The Keras policy of ``--precision`` for ``model``: ``auto`` → the fastest for this machine."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision: unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if gpu_visible():
            precision = "float32" if model in NO_FLOAT16 else "float16"
        else:
            precision = "bfloat16" if native_bf16() else "float32"
    if precision == "float16" and model in NO_FLOAT16:
        raise ValueError(f"--precision float16: {model} cannot train in float16 ({NO_FLOAT16[model]}); "
                         f"use bfloat16 or float32")
    return POLICIES[precision]


def legacy_policy(mixed_precision: bool) -> str:
    """What ``--mixed-precision`` always meant: float16 on a GPU, bfloat16 on a CPU (float32 without it)."""
    if not mixed_precision:
        return "float32"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def run_policy(info: Dict[str, Any]) -> str:
    """The policy a run was trained in: its recorded ``precision``, else (older runs) its ``mixed_precision``."""
    return info.get("precision") or legacy_policy(bool(info.get("mixed_precision", False)))
