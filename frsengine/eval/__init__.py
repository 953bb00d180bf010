"""`frsengine eval`: compare restoration models on a fixed, seeded synthetic LQ set (PSNR, SSIM,
MS-SSIM, identity distance per task; the paper's Tables 1-4) and on real LQ faces (NIQE; Table 5),
with comparison grids (Fig. 6 / Fig. 8). See docs/eval.md.

    from frsengine.eval import evaluate
    record = evaluate(["models/frsnet"], out="eval-out", data="faces/", tasks="full,sr", seed=0)
"""
from frsengine.eval.run import RESULTS_JSON, RESULTS_MD, evaluate
from frsengine.eval.tasks import TASKS

__all__ = ["RESULTS_JSON", "RESULTS_MD", "TASKS", "evaluate"]
