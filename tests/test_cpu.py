"""admlops.cpu: the int8 kernel class a CPU's flags select and the quantization settings chosen for it. Checked on
given flag sets (the three kinds of x86 CPU the product runs on), never on which CPU the test lands on."""
import pytest

from admlops import cpu
from admlops.errors import UsageError

EPYC_AVX2 = {"sse4_2", "avx", "avx2", "fma"}  # AMD EPYC (Zen 2/3): no AVX-512, no VNNI
SKYLAKE_SP = EPYC_AVX2 | {"avx512f", "avx512bw", "avx512vl"}  # AVX-512 before VNNI
ALDER_LAKE = EPYC_AVX2 | {"avx_vnni"}
CASCADE_LAKE = SKYLAKE_SP | {"avx512_vnni"}
SAPPHIRE_RAPIDS = CASCADE_LAKE | {"avx_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}


@pytest.mark.parametrize("flags, kernels, fix", [
    (EPYC_AVX2, "avx2", True), (SKYLAKE_SP, "avx512", True), (ALDER_LAKE, "avx_vnni", False),
    (CASCADE_LAKE, "avx512_vnni", False), (SAPPHIRE_RAPIDS, "amx", False), ({"sse4_2"}, "sse4", True),
])
def test_kernel_class_and_overflow_fix(flags, kernels, fix):
    assert cpu.int8_kernels(flags) == kernels
    assert cpu.saturates(kernels) is fix
    settings = cpu.int8_settings(kernels)
    assert settings["cpu_kernels"] == kernels and settings["overflow_fix"] is fix
    assert settings["chosen_from"] == "deploy config"


def test_auto_is_this_machines_class():
    settings = cpu.int8_settings("auto")
    assert settings["cpu_kernels"] == cpu.int8_kernels(cpu.cpu_flags())
    assert settings["chosen_from"] == "this machine's CPU flags"
    assert settings["overflow_fix"] is cpu.saturates(settings["cpu_kernels"])


def test_unknown_class_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown int8 CPU kernel class 'vnni512'.*avx2"):
        cpu.int8_settings("vnni512")


def test_loading_a_vnni_build_on_a_saturating_cpu_warns(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(EPYC_AVX2))
    with pytest.warns(UserWarning, match=r"model.xml: int8 built for amx kernels .* runs here on avx2 kernels"):
        cpu.check_int8_build(cpu.int8_settings("amx"), tmp_path / "model.xml")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu.check_int8_build(cpu.int8_settings("amx"), tmp_path / "model.xml")  # the CPU it was built for
        cpu.check_int8_build(cpu.int8_settings("avx2"), tmp_path / "model.xml")  # 7-bit weights run anywhere


def _fail():
    raise OSError("no BLAS to limit")


def test_a_pool_whose_blas_limit_fails_still_works(monkeypatch):
    """The conversion pools' worker initializer cannot take the work down: a multiprocessing pool whose initializer
    raises replaces its dying workers forever while the caller waits (the control, without the guard, times out)."""
    import multiprocessing

    monkeypatch.setattr(cpu, "one_blas_thread", _fail)  # the forked workers inherit it
    with pytest.warns(UserWarning, match="could not hold BLAS to one thread"):
        cpu._worker_blas()
    with cpu.worker_pool(1) as pool:
        assert pool.map_async(abs, [-3, 4]).get(timeout=60) == [3, 4]
    with multiprocessing.get_context("fork").Pool(1, initializer=_fail) as pool:  # the control
        with pytest.raises(multiprocessing.TimeoutError):
            pool.map_async(abs, [-3]).get(timeout=3)
        pool.terminate()
