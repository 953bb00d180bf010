"""Retraining a searched architecture from scratch (Algorithm 1, lines 8-11).

MFPSNet trains without priors (one pass, as FRSNet) for ``schedule.prior_start_epoch`` epochs, then
with its two passes and the frozen prior network (Sec. 4.2). Every ``val.every`` epochs the fixed
validation set is restored and scored (PSNR/SSIM, RGB, against the HQ faces; the LQ input's own
scores are logged once as the baseline). Besides run.py's files the run folder gets
``checkpoints/best.safetensors`` (best validation PSNR), ``model/`` (that model as a package for
``frsengine restore``) and ``val_history.json``.
"""
from __future__ import annotations

import json
import logging
import time

import torch

from frsengine.export import save_package
from frsengine.io import write_bytes_atomic
from frsengine.models import build_derived
from frsengine.nas.genotype import load_genotype
from frsengine.train import data, distributed
from frsengine.train.config import RunConfig
from frsengine.train.losses import RestorationLoss
from frsengine.train.precision import autocast
from frsengine.train.run import Run, StopRequest, cosine_lr, execute, set_lr
from frsengine.train.search import prior_function
from frsengine.train.steps import as_outputs, train_step

log = logging.getLogger("frsengine.train")


@torch.no_grad()
def evaluate(model, val: data.ValidationSet, batch_size: int, device: torch.device, kwargs: dict,
             precision: str = "fp32") -> dict:
    """Mean PSNR / SSIM (RGB, [0, 1]) of the restored validation faces. The forward passes run under
    ``precision``'s autocast (as training's do); the outputs are cast to float32 before scoring."""
    from frsengine.metrics import psnr, ssim

    was = model.training
    model.eval()
    ps, ss = [], []
    for i in range(0, val.hq.shape[0], batch_size):
        x, y = val.lq[i:i + batch_size].to(device), val.hq[i:i + batch_size].to(device)
        with autocast(precision, device):
            out = as_outputs(model(x, **kwargs))[-1]
        out = out.float().clamp(0, 1)
        ps.append(psnr(out, y).cpu())
        ss.append(ssim(out, y).cpu())
    model.train(was)
    return {"psnr": float(torch.cat(ps).mean()), "ssim": float(torch.cat(ss).mean())}


def lq_baseline(val: data.ValidationSet) -> dict:
    """The LQ inputs' own PSNR / SSIM against the HQ faces."""
    from frsengine.metrics import psnr, ssim

    return {"psnr": float(psnr(val.lq, val.hq).mean()), "ssim": float(ssim(val.lq, val.hq).mean())}


def retrain(cfg: RunConfig, resume: str | None = None) -> dict:
    """Run (or resume) retraining; returns the summary (also printed as one line)."""
    return execute(cfg, resume, _retrain)


def _retrain(run: Run) -> dict:
    cfg, info, device = run.cfg, run.info, run.device
    genotype = load_genotype(cfg.model.genotype)
    if genotype.network != cfg.model.network:
        log.info("model.network set to %s by the genotype", genotype.network)
        cfg.model.network = genotype.network
    faces = data.faces(cfg.data, cfg.data.list, cfg.data.limit, cfg.seed)
    bs = cfg.schedule.batch_size
    loader = data.loader(faces, cfg.data, bs, cfg.seed, info, device)
    per_epoch = len(loader)
    total = cfg.schedule.epochs * per_epoch
    if cfg.schedule.max_steps:
        total = min(total, cfg.schedule.max_steps)

    torch.manual_seed(cfg.seed)
    model = build_derived(genotype, cfg.model.preset).to(device)
    mfpsnet = genotype.network == "mfpsnet"
    prior_fn = prior_function(cfg, model, device)
    loss_fn = RestorationLoss.from_config(cfg.loss).to(device)
    o = cfg.optim
    params = list(model.parameters())
    opt = (torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay) if o.name == "adam" else
           torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay))
    net = distributed.wrap(model, info, find_unused=mfpsnet)
    val = data.validation_set(cfg.data, cfg.val) if info.is_main else None

    pos = run.restore(model, {"weights": opt}, {"epoch": 0, "batch": 0, "step": 0, "best_psnr": None})
    log.info("retrain %s (%s, preset %s): %d faces, %d steps/epoch, %d steps, %d rank(s), device %s, %s",
             cfg.model.genotype, genotype.network, cfg.model.preset, len(faces), per_epoch, total, info.world_size,
             device, cfg.model.precision)
    history_path = run.dir / "val_history.json"
    baseline = lq_baseline(val) if val is not None else None
    if baseline is not None:
        log.info("validation set: %d faces; LQ input PSNR %.2f dB, SSIM %.4f", val.hq.shape[0],
                 baseline["psnr"], baseline["ssim"])
    imgs_per_step = bs * info.world_size * (1 + (4 if cfg.data.disentangle else 0))

    def kwargs_for(epoch: int) -> dict:
        if not mfpsnet:
            return {}
        return {"prior_fn": prior_fn, "use_priors": epoch >= cfg.schedule.prior_start_epoch}

    loss = float("nan")
    last_val: dict = {}
    stopped = False
    bar = run.progress(total, pos["step"], "train")
    with StopRequest() as stop:
        while pos["step"] < total and not stopped:
            epoch = pos["epoch"]
            kwargs = kwargs_for(epoch)
            loader.set_epoch(epoch, pos["batch"])
            run.meter.waited()
            for batch in loader:
                if pos["step"] >= total:
                    break
                run.meter.waited()
                lr = cosine_lr(pos["step"], total, o.lr, o.lr_min)
                set_lr(opt, lr)
                model.train()
                loss, shown = train_step(net, batch, loss_fn, opt, params, device, cfg.schedule.micro_batches,
                                         o.grad_clip, kwargs, cfg.model.precision)
                pos["batch"] += 1
                pos["step"] += 1
                run.meter.worked(imgs_per_step)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{run.meter.images_per_s:.1f}",
                                wait=f"{run.meter.wait_fraction:.0%}", **({"psnr": f"{last_val['psnr']:.2f}"} if last_val else {}))
                if pos["step"] % cfg.output.log_every == 0:
                    run.scalars(pos["step"], {"train/loss": distributed.mean(loss, info), "train/lr": lr,
                                              "train/images_per_s": run.meter.images_per_s,
                                              "train/data_wait": run.meter.wait_fraction})
                if cfg.output.image_every and pos["step"] % cfg.output.image_every == 0:
                    run.images(pos["step"], "train/lq_out_gt", *shown)
                stop_now = distributed.any_flag(stop.requested, info)
                if pos["step"] % cfg.output.checkpoint_every == 0 or stop_now:
                    run.save(model, {"weights": opt}, pos)
                if stop_now:
                    stopped = True
                    break
                run.meter.waited()
            if stopped:
                break
            finished_epoch = pos["batch"] >= per_epoch
            if finished_epoch:
                pos["epoch"], pos["batch"] = epoch + 1, 0
            best = False
            if val is not None and (finished_epoch and (epoch + 1) % cfg.val.every == 0 or pos["step"] >= total):
                last_val = evaluate(model, val, cfg.val.batch_size, device, kwargs, cfg.model.precision)
                best = pos["best_psnr"] is None or last_val["psnr"] > pos["best_psnr"]
                if best:
                    pos["best_psnr"] = last_val["psnr"]
                    save_package(model, run.dir / "model", preset=cfg.model.preset, input_size=cfg.data.size,
                                 training_data=f"{cfg.data.root} ({len(faces)} faces), epoch {epoch + 1}, "
                                               f"step {pos['step']}, seed {cfg.seed}", overwrite=True)
                record = {"epoch": epoch + 1, "step": pos["step"], **last_val, "lq": baseline}
                hist = json.loads(history_path.read_text()) if history_path.exists() else []
                hist = [h for h in hist if h["step"] != pos["step"]] + [record]
                write_bytes_atomic(history_path, json.dumps(hist, indent=1).encode())
                run.scalars(pos["step"], {"val/psnr": last_val["psnr"], "val/ssim": last_val["ssim"],
                                          "val/psnr_lq": baseline["psnr"], "val/ssim_lq": baseline["ssim"]})
                log.info("epoch %d: val PSNR %.2f dB, SSIM %.4f (LQ %.2f / %.4f)%s", epoch + 1, last_val["psnr"],
                         last_val["ssim"], baseline["psnr"], baseline["ssim"], " (best)" if best else "")
            distributed.barrier(info)
            run.save(model, {"weights": opt}, pos, best=best)
    bar.close()
    elapsed = time.perf_counter() - run.started
    summary = {"status": "interrupted" if stopped else "done", "steps": pos["step"], "epochs": pos["epoch"],
               "loss": loss, "val": last_val, "val_lq": baseline, "best_psnr": pos["best_psnr"],
               "images_per_s": run.meter.images_per_s, "data_wait": run.meter.wait_fraction, "seconds": elapsed}
    val_text = (f"; val PSNR {last_val['psnr']:.2f} dB / SSIM {last_val['ssim']:.4f} (LQ {baseline['psnr']:.2f} / "
                f"{baseline['ssim']:.4f}), best {pos['best_psnr']:.2f} dB -> {run.dir / 'model'}") if last_val else ""
    run.summary(f"train {summary['status']}: {pos['step']} steps, {pos['epoch']} epochs in {elapsed:.0f} s, loss "
                f"{loss:.4f}, {run.meter.images_per_s:.1f} img/s, data wait {run.meter.wait_fraction:.0%}{val_text}"
                + (f"; resume with --resume {run.dir}" if stopped else ""))
    return summary
