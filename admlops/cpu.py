"""The x86 CPU as int8 kernels see it: its vector extensions (``/proc/cpuinfo`` flags) and the int8 kernel class
they select.

Why it matters: x86 int8 convolutions multiply uint8 activations by int8 weights. With VNNI (``avx512_vnni``,
``avx_vnni``) or AMX (``amx_int8``) the products are summed straight into 32 bits. Without it (AVX2, or AVX-512
before VNNI) the kernels use ``vpmaddubsw``, which adds two u8 x s8 products into a *saturating 16-bit*
intermediate: 255 x 127 x 2 = 64770 does not fit in 32767, so large activations meeting large weights are clipped
and accuracy drops. The standard fix halves the weight range (7-bit weights: 255 x 63 x 2 = 32130 fits), which
NNCF calls the overflow fix (``OverflowFix.ENABLE``) and ONNX Runtime ``reduce_range``; on VNNI/AMX it only costs
resolution, so it is off there. The backends choose with :func:`int8_settings` and record the choice.
"""
from __future__ import annotations

import contextlib
import functools
import platform
import warnings
from pathlib import Path

from admlops.errors import UsageError

# int8 kernel classes, best first: (name, the flag that selects it, sums in 32 bits without saturation)
KERNELS = (("amx", "amx_int8", True), ("avx512_vnni", "avx512_vnni", True), ("avx_vnni", "avx_vnni", True),
           ("avx512", "avx512bw", False), ("avx2", "avx2", False))
BASELINE = "sse4"  # below AVX2: the runtimes' reference int8 paths (also 16-bit intermediates)
NOTED_FLAGS = ("avx2", "avx512f", "avx512bw", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags as the kernel lists them (empty off Linux or off x86)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key == "flags":
                return frozenset(value.split())
    return frozenset()


def int8_kernels(flags: frozenset[str] | set[str] | None = None) -> str:
    """The int8 kernel class ``flags`` (default: this CPU's) select: amx, avx512_vnni, avx_vnni, avx512, avx2, sse4."""
    flags = cpu_flags() if flags is None else flags
    return next((name for name, flag, _ in KERNELS if flag in flags), BASELINE)


def saturates(kernels: str) -> bool:
    """Whether the int8 kernel class sums u8 x s8 pairs into a saturating 16-bit intermediate (no VNNI/AMX)."""
    known = {name: exact for name, _, exact in KERNELS} | {BASELINE: False}
    if kernels not in known:
        raise UsageError(f"unknown int8 CPU kernel class {kernels!r}: expected one of {', '.join(known)} or auto")
    return not known[kernels]


def int8_settings(target: str = "auto") -> dict:
    """The int8 quantization settings for the CPU the model will run on: ``target`` a kernel class (KERNELS'
    names, e.g. ``avx2`` for a deployment fleet without VNNI) or ``auto``, this machine's. Returns what build
    reports record: the kernel class, where it came from, and whether the overflow fix (7-bit weights) is on."""
    kernels = int8_kernels() if target == "auto" else target
    return {"cpu_kernels": kernels, "chosen_from": "this machine's CPU flags" if target == "auto" else "deploy config",
            "overflow_fix": saturates(kernels), "machine": platform.machine()}


def check_int8_build(cpu: dict, artifact: Path | str) -> None:
    """Warn when an int8 artifact built for VNNI/AMX kernels (no overflow fix: ``cpu`` is its build report's
    ``quantization.cpu``) is loaded on a CPU whose int8 kernels saturate: its gate was measured elsewhere."""
    here = int8_kernels()
    if not cpu.get("overflow_fix") and saturates(here):
        warnings.warn(f"{artifact}: int8 built for {cpu.get('cpu_kernels')} kernels (full 8-bit weights) runs here on "
                      f"{here} kernels, whose 16-bit sums can saturate: its accuracy may fall below its gate. Rebuild "
                      f"it for this CPU (int8_cpu: {here} or auto)", stacklevel=3)


def worker_pool(workers: int | None = None):
    """A process pool (``workers`` processes; None: one per core) whose workers run numpy's BLAS on one thread each.
    The pool is the parallelism: BLAS threads of their own would spin beside the other workers (measured on infos'
    120k-point scans with one worker: 7.3 s of system time against 1.9 s, over a 7 s run)."""
    from multiprocessing import Pool

    return Pool(workers, initializer=_worker_blas)


def _worker_blas() -> None:
    """A pool worker's initializer: one BLAS thread, and never an exception (a multiprocessing pool whose initializer
    raises replaces each worker as it dies, forever, and the work waits on results that never come: one thread fewer
    is an optimisation, not worth a hang)."""
    try:
        one_blas_thread()
    except Exception as exc:  # noqa: BLE001 - see the docstring
        warnings.warn(f"could not hold BLAS to one thread in a worker ({type(exc).__name__}: {exc}); it runs with its "
                      "default threads", stacklevel=1)


def one_blas_thread():
    """numpy's BLAS held to one thread, from now on (a pool worker's initializer) or for a ``with`` block (work that
    is one worker by design, ingest), whose small matrix products would otherwise wake BLAS threads that spin on the
    other cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)
