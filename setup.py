"""frsengine: NAS-based blind face restoration engine (FRSNet / MFPSNet).

Native kernels: ``frsengine._C`` is built from csrc/ (C++ CPU sources always, CUDA sources when
torch is a CUDA build and nvcc exists). ``FRSENGINE_BUILD_EXT=0`` skips it: the package then runs
on the plain PyTorch reference kernels. Install with ``pip install --no-build-isolation -e .`` so
the extension is compiled against the torch already installed.
"""
import os
import re
import shutil
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"
CPU_SOURCES = ["csrc/python_module.cpp", "csrc/registration.cpp", "csrc/mixed_op.cpp", "csrc/mixed_op_nhwc.cpp",
               "csrc/paired_conv.cpp", "csrc/beta_aggregate.cpp"]
CUDA_SOURCES = ["csrc/cuda/mixed_op.cu", "csrc/cuda/beta_aggregate.cu"]


def _ext_api_version() -> int:
    match = re.search(r"#define FRSENGINE_EXT_API (\d+)", (CSRC / "frsengine_ops.h").read_text())
    return int(match.group(1))


def _extensions():
    """(ext_modules, cmdclass) for frsengine._C, or ([], {}) when the build is switched off."""
    if os.environ.get("FRSENGINE_BUILD_EXT", "1") == "0":
        print("frsengine: FRSENGINE_BUILD_EXT=0, skipping the native extension")
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    stamp = f"api{_ext_api_version()}-torch{torch.__version__}"
    with_cuda = bool(torch.version.cuda) and (CUDA_HOME is not None or shutil.which("nvcc") is not None)
    macros = [("FRSENGINE_BUILD_STAMP", f'"{stamp}"'), ("FRSENGINE_WITH_CUDA", "1" if with_cuda else "0")]
    # -fno-trapping-math lets GCC if-convert (vectorise) the ReLU masks; no code here relies on FP traps.
    # cpp_extension adds the C++ standard torch was built with.
    cxx = ["-O3", "-fopenmp", "-fno-trapping-math"]
    if with_cuda:
        ext = CUDAExtension("frsengine._C", CPU_SOURCES + CUDA_SOURCES, define_macros=macros,
                            include_dirs=[str(CSRC)], extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
                            extra_link_args=["-fopenmp"])
    else:
        ext = CppExtension("frsengine._C", CPU_SOURCES, define_macros=macros, include_dirs=[str(CSRC)],
                           extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    print(f"frsengine: building frsengine._C ({stamp}, CUDA {'on' if with_cuda else 'off'})")
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = _extensions()

setup(
    name="frsengine",
    version="0.1.0",
    description="Blind face restoration with neural architecture search (FRSNet/MFPSNet), "
    "with fused kernels and batched degradation synthesis",
    # Triton kernels live in kernels/ (beside csrc/) and install as frsengine.kernels.
    packages=find_packages(include=["frsengine", "frsengine.*"]) + ["frsengine.kernels"],
    package_dir={"frsengine.kernels": "kernels"},
    python_requires="==3.11.*",
    install_requires=[
        "torch==2.13.0",
        "numpy>=2.0",
        "pillow>=11",
        "opencv-python-headless==4.14.0.94",
        "tqdm>=4.66",
        "pyyaml>=6",
        "safetensors>=0.4",
    ],
    extras_require={
        "dali": ["nvidia-dali-cuda130==2.4.0"],
        "test": ["pytest>=8", "pytest-benchmark>=5"],
    },
    entry_points={"console_scripts": ["frsengine=frsengine.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
