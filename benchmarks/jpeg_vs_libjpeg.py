"""How far the torch JPEG (frsengine/degrade/jpeg.py) is from a real codec (libjpeg through
OpenCV) on real faces: PSNR between the two outputs, and of each against the input.

    .venv/bin/python benchmarks/jpeg_vs_libjpeg.py [FACE_DIR] [LIST_FILE] [N]
"""
import sys

import cv2
import numpy as np
import torch

from frsengine.degrade.jpeg import jpeg_roundtrip
from frsengine.io.images import read_image, to_square


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def libjpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]


def main(root="../shared/data/faces-hq/utkface-aligned", list_file="../shared/data/splits/utkface-val.txt", n=64):
    names = open(list_file).read().split()[: int(n)]
    imgs = np.stack([to_square(read_image(f"{root}/{name}")[0], 128) for name in names])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    print(f"{len(imgs)} faces from {root}\n| quality | torch vs libjpeg | libjpeg vs input | torch vs input |")
    for q in (15, 30, 50, 75, 90):
        ours = (jpeg_roundtrip(x, torch.full((len(imgs),), q)).permute(0, 2, 3, 1).numpy() * 255).round()
        real = [libjpeg(img, q) for img in imgs]
        rows = [(psnr(o, r), psnr(r, i), psnr(o, i)) for o, r, i in zip(ours, real, imgs)]
        a, b, c = np.mean(rows, axis=0)
        print(f"| {q} | {a:.2f} dB | {b:.2f} dB | {c:.2f} dB |")


if __name__ == "__main__":
    main(*sys.argv[1:])
