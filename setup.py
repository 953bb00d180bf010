"""frsengine: NAS-based blind face restoration engine (FRSNet / MFPSNet)."""
from setuptools import find_packages, setup

setup(
    name="frsengine",
    version="0.1.0",
    description="Blind face restoration with neural architecture search (FRSNet/MFPSNet), "
    "with fused kernels and batched degradation synthesis",
    packages=find_packages(include=["frsengine", "frsengine.*"]),
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
)
