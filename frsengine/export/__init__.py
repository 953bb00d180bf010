"""Deployment: model packages (genotype + safetensors weights + metadata), ONNX export, TensorRT
engines and the inference backends ``frsengine.restore`` runs on."""
from frsengine.export.package import ModelPackage, PackageError, load_package, save_package

__all__ = ["ModelPackage", "PackageError", "load_package", "save_package"]
