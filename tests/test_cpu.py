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
