"""frsengine.bench: machine description, peak estimate and FLOP counting (no measurements)."""
import pytest
import torch

from frsengine.bench import flops, machine


def test_machine_description_has_the_keys():
    info = machine.describe_machine(gpu=False)
    for key in ("cpu", "physical_cores", "logical_cpus", "usable_cpus", "torch_threads", "gpu", "gpu_memory_gib",
                "versions", "git_commit", "peak", "load_average", "platform", "python"):
        assert key in info, key
    assert info["physical_cores"] >= 1 and info["logical_cpus"] >= info["physical_cores"]
    assert info["torch_threads"] == torch.get_num_threads()
    for lib in ("torch", "numpy", "onnxruntime", "opencv", "dali", "triton", "tensorrt", "frsengine"):
        assert lib in info["versions"], lib
    assert info["versions"]["torch"] == torch.__version__
    assert isinstance(info["cpu"], str) and info["cpu"]
    assert "threads" in machine.summary_line(info)


def test_peak_estimate_is_positive_here():
    peak = machine.cpu_peak()
    assert peak["fp32"] is not None and peak["fp32"] > 0, peak
    assert peak["method"].startswith("estimate")


def test_peak_formula(monkeypatch):
    cpus = [{"model name": "Test CPU", "physical id": "0", "core id": str(i), "cpu MHz": "2000.000",
             "flags": "sse2 fma avx2 avx512f"} for i in range(4)]
    monkeypatch.setattr(machine, "_cpuinfo", lambda: cpus)
    monkeypatch.setattr(machine, "_clock_ghz", lambda cpus, model: (2.0, "test clock"))
    assert machine.cpu_peak()["fp32"] == 4 * 2.0e9 * 64          # AVX-512: 16 lanes x FMA x 2 units
    assert machine.cpu_peak(2)["fp32"] == 2 * 2.0e9 * 64         # the cores the run uses
    assert machine.cpu_peak()["bf16"] is None                    # no native bf16: no estimate, said so
    assert "no native bf16" in machine.cpu_peak()["note"]
    for c in cpus:
        c["flags"] += " avx512_bf16"
    assert machine.cpu_peak()["bf16"] == 4 * 2.0e9 * 128         # VDPBF16PS: 16 lanes x 2 pairs x FMA x 2 units
    for c in cpus:
        c["flags"] += " amx_tile amx_bf16"
    assert machine.cpu_peak(2)["bf16"] == 2 * 2.0e9 * 1024       # AMX: 16384 FLOPs per 16 cycles
    assert machine.peak_flops({"cpu": machine.cpu_peak(2)}, "cpu", "bf16") == 2 * 2.0e9 * 1024
    for c in cpus:
        c["flags"] = "sse2 fma avx2"
    assert machine.cpu_peak()["fp32"] == 4 * 2.0e9 * 32          # AVX2 FMA: 8 lanes x FMA x 2 units
    for c in cpus:
        c["flags"] = ""
    assert machine.cpu_peak()["fp32"] is None                    # unknown ISA: no estimate, said so
    assert "unknown" in machine.cpu_peak()["method"]


def test_gpu_peaks():
    assert machine.gpu_peak("NVIDIA H100 80GB HBM3")["tf32"] == pytest.approx(494.7e12)
    assert machine.gpu_peak("NVIDIA H100 PCIe")["fp32"] == pytest.approx(51.2e12)
    assert machine.gpu_peak("NVIDIA H200")["fp16"] == pytest.approx(989.4e12)
    assert machine.gpu_peak("NVIDIA A100-SXM4-80GB")["fp16"] == pytest.approx(312e12)
    unknown = machine.gpu_peak("NVIDIA GeForce GTX 1080")
    assert "fp32" not in unknown and "unknown" in unknown["method"]
    peak = {"cpu": {"fp32": 1e11}, "gpu": machine.gpu_peak("NVIDIA H100 80GB HBM3")}
    assert machine.peak_flops(peak, "cpu") == 1e11
    assert machine.peak_flops(peak, "cpu", "bf16") is None       # not estimated
    assert machine.peak_flops(peak, "cuda", "fp16") == pytest.approx(989.4e12)
    tf32 = torch.backends.cudnn.allow_tf32
    assert machine.peak_flops(peak, "cuda", "fp32") == pytest.approx(494.7e12 if tf32 else 66.9e12)


def test_flops_of_a_known_conv():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 16, 16)
    forward = 2 * 2 * 16 * 16 * 8 * 3 * 3 * 3                  # 2 FLOPs per multiply-add, per output value
    assert flops.count_flops(lambda: conv(x)) == forward
    xg = x.clone().requires_grad_()
    # backward: the gradient of the input and of the weight, each as much work as the forward
    assert flops.count_flops(lambda: conv(xg).sum().backward()) == 3 * forward


def test_flops_scale_with_the_area():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.Upsample(scale_factor=2),
                              torch.nn.Conv2d(8, 3, 1))

    def at(size):
        x = torch.randn(1, 3, size, size)
        return flops.count_flops(lambda: net(x))

    assert flops.scaled_flops(at, 64, count_size=16) == at(64)


def test_header_names_the_bf16_peak_for_bf16_runs():
    from frsengine.bench import runner

    info = machine.describe_machine(gpu=False)
    info["peak"]["cpu"] = {"fp32": 1e11, "method": "fp32 est", "bf16": 8e11, "bf16_method": "amx est",
                           "note": "upper bound"}
    assert "CPU peak 800 GFLOP/s bf16 (amx est; upper bound)" in runner.header(info, runner.Options(bf16=True))
    assert "GFLOP/s bf16" not in runner.header(info, runner.Options())


def test_a_cuda_parent_describes_the_gpu_without_cuda(tmp_path, monkeypatch):
    """For CUDA the parent leaves CUDA alone: the GPU from nvidia-smi, else a spawned child's
    description (here: the same machine as described in this process)."""
    monkeypatch.setenv("PATH", str(tmp_path))   # no nvidia-smi: the child
    here = machine.describe_for(1, "cpu", "spawn")
    there = machine.describe_for(1, "cuda", "spawn")
    assert there["cpu"] == here["cpu"] and there["torch_threads"] == 1
    assert there["gpu"] == here["gpu"]
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771'\n")
    smi.chmod(0o755)
    assert machine.nvidia_smi_gpus() == [("NVIDIA H200", 140.4)]
    info = machine.describe_for(1, "cuda", "spawn")
    assert (info["gpu"], info["gpu_memory_gib"], info["gpu_count"]) == ("NVIDIA H200", 140.4, 1)
    assert info["peak"]["gpu"] == machine.gpu_peak("NVIDIA H200") and info["cpu"] == here["cpu"]
