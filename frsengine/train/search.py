"""Architecture search (Algorithm 1, lines 1-7): alternate a weight step on D_A and a first-order
alpha/beta step on D_B; alpha/beta frozen for the first ``arch.start_epoch`` epochs; decode the
genotype at every checkpoint and at the end.

Writes into the run folder (besides run.py's files): ``genotype.json`` (the current decoding),
``genotype.png``, ``arch_history.json`` (softmax(alpha) and normalised beta per epoch) and
``arch_evolution.png``.
"""
from __future__ import annotations

import logging
import time

import torch

from frsengine.errors import FrsError
from frsengine.io import write_bytes_atomic
from frsengine.models import build_supernet
from frsengine.nas.decode import decode
from frsengine.nas.fused import use_fused_search
from frsengine.train import arch_log, data, distributed
from frsengine.train.config import RunConfig
from frsengine.train.losses import RestorationLoss
from frsengine.train.run import Run, StopRequest, cosine_lr, execute, set_lr
from frsengine.train.steps import search_step

log = logging.getLogger("frsengine.train")


def prior_function(cfg: RunConfig, model, device: torch.device):
    """MFPSNet's pass-2 prior function (the frozen prior network), checked against the model's priors."""
    if cfg.model.network != "mfpsnet":
        return None
    from frsengine.priors.module import load_prior_network

    net = load_prior_network(cfg.model.prior_student, cfg.model.prior_dictionary).to(device)
    with torch.no_grad():
        probe = net.mfpsnet_priors(torch.zeros(1, 3, cfg.data.size, cfg.data.size, device=device))
    for p in model.cfg.priors:
        got = probe.get(p.name)
        if got is None or got.shape[1] != p.channels:
            raise FrsError(f"the prior network gives {p.name!r} with "
                           f"{None if got is None else got.shape[1]} channels, the model's preset expects "
                           f"{p.channels}: use a preset with the default priors")
    return net.mfpsnet_priors


def _optimizers(cfg: RunConfig, model):
    o = cfg.optim
    w = model.weight_parameters()
    if o.name == "sgd":
        opt_w = torch.optim.SGD(w, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    else:
        opt_w = torch.optim.Adam(w, lr=o.lr, weight_decay=o.weight_decay)
    a = cfg.arch
    opt_a = torch.optim.Adam(model.arch_parameters(), lr=a.lr, betas=tuple(a.betas), weight_decay=a.weight_decay)
    return opt_w, opt_a


def search(cfg: RunConfig, resume: str | None = None) -> dict:
    """Run (or resume) a search; returns the summary (also printed as one line)."""
    return execute(cfg, resume, _search)


def _precision_text(cfg) -> str:
    arch = cfg.arch.resolved_precision(cfg.model.precision)
    return cfg.model.precision if arch == cfg.model.precision else f"{cfg.model.precision} (alpha/beta step {arch})"


def _search(run: Run) -> dict:
    cfg, info, device = run.cfg, run.info, run.device
    faces = data.faces(cfg.data, cfg.data.list, cfg.data.limit, cfg.seed)
    d_a, d_b = data.split(faces, cfg.data.arch_fraction, cfg.seed)
    bs = cfg.schedule.batch_size
    load_a = data.loader(d_a, cfg.data, bs, cfg.seed, info, device)
    load_b = data.loader(d_b, cfg.data, bs, cfg.seed + 1, info, device)
    per_epoch = min(len(load_a), len(load_b))
    total = cfg.schedule.epochs * per_epoch
    if cfg.schedule.max_steps:
        total = min(total, cfg.schedule.max_steps)

    torch.manual_seed(cfg.seed)
    model = build_supernet(cfg.model.network, cfg.model.preset).to(device)
    if cfg.model.fused != "off":
        use_fused_search(model, mode="keep" if cfg.model.fused == "auto" else cfg.model.fused)
    prior_fn = prior_function(cfg, model, device)
    kwargs = {"prior_fn": prior_fn} if prior_fn is not None else {}
    loss_fn = RestorationLoss.from_config(cfg.loss).to(device)
    opt_w, opt_a = _optimizers(cfg, model)
    net = distributed.wrap(model, info, find_unused=True)

    pos = run.restore(model, {"weights": opt_w, "arch": opt_a}, {"epoch": 0, "batch": 0, "step": 0})
    log.info("search %s/%s: %d faces (D_A %d, D_B %d), %d steps/epoch, %d steps, %d rank(s), device %s, %s",
             cfg.model.network, cfg.model.preset, len(faces), len(d_a), len(d_b), per_epoch, total,
             info.world_size, device, _precision_text(cfg))

    weights, arch = model.weight_parameters(), model.arch_parameters()
    graphed = None
    if cfg.schedule.cuda_graph:
        if info.world_size > 1:
            raise FrsError("schedule.cuda_graph runs in one process: set it to false for a multi-process search")
        from frsengine.train.search_graph import GraphedSearchStep

        graphed = GraphedSearchStep(net, loss_fn, opt_w, opt_a, weights, arch, device,
                                    micro_batches=cfg.schedule.micro_batches, grad_clip=cfg.optim.grad_clip,
                                    forward_kwargs=kwargs, precision_w=cfg.model.precision,
                                    precision_a=cfg.arch.resolved_precision(cfg.model.precision))
    history_path = run.dir / "arch_history.json"
    imgs_per_step = bs * info.world_size * (1 + (4 if cfg.data.disentangle else 0))

    saved_at = [-1]

    def checkpoint():
        genotype = decode(model, cfg.model.ranking, meta={"search": str(run.dir), "epoch": pos["epoch"],
                                                          "step": pos["step"], "seed": cfg.seed,
                                                          "preset": cfg.model.preset})
        if info.is_main:
            write_bytes_atomic(run.dir / "genotype.json", genotype.to_json().encode())
        if saved_at[0] != (pos["step"], pos["epoch"]):
            run.save(model, {"weights": opt_w, "arch": opt_a}, pos)
            saved_at[0] = (pos["step"], pos["epoch"])
        return genotype

    loss_w = loss_a = float("nan")
    stopped = False
    bar = run.progress(total, pos["step"], "search")
    with StopRequest() as stop:
        while pos["step"] < total and not stopped:
            epoch = pos["epoch"]
            arch_on = epoch >= cfg.arch.start_epoch
            load_a.set_epoch(epoch, pos["batch"])
            load_b.set_epoch(epoch, pos["batch"])
            it_b = iter(load_b) if arch_on else None
            run.meter.waited()
            for batch_a in load_a:
                if pos["batch"] >= per_epoch or pos["step"] >= total:
                    break
                batch_b = next(it_b) if it_b is not None else None
                run.meter.waited()
                lr = cosine_lr(pos["step"], total, cfg.optim.lr, cfg.optim.lr_min)
                if graphed is not None:
                    lw, la, shown = graphed.step(batch_a, batch_b, lr)
                else:
                    set_lr(opt_w, lr)
                    lw, la, shown = search_step(net, loss_fn, opt_w, opt_a, weights, arch, batch_a, batch_b, device,
                                                cfg.schedule.micro_batches, cfg.optim.grad_clip, kwargs,
                                                cfg.model.precision, cfg.arch.resolved_precision(cfg.model.precision))
                loss_w, loss_a = float(lw), (float(la) if la is not None else loss_a)
                pos["batch"] += 1
                pos["step"] += 1
                run.meter.worked(imgs_per_step)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_w:.4f}", arch=f"{loss_a:.4f}" if arch_on else "frozen",
                                img_s=f"{run.meter.images_per_s:.1f}", wait=f"{run.meter.wait_fraction:.0%}")
                if pos["step"] % cfg.output.log_every == 0:
                    vals = {"search/loss_w": distributed.mean(loss_w, info), "search/lr": lr,
                            "search/images_per_s": run.meter.images_per_s, "search/data_wait": run.meter.wait_fraction}
                    if arch_on:
                        vals["search/loss_arch"] = distributed.mean(loss_a, info)
                    run.scalars(pos["step"], vals)
                if cfg.output.image_every and pos["step"] % cfg.output.image_every == 0:
                    run.images(pos["step"], "search/lq_out_gt", *shown)
                stop_now = distributed.any_flag(stop.requested, info)
                if pos["step"] % cfg.output.checkpoint_every == 0 or stop_now:
                    checkpoint()
                if stop_now:
                    stopped = True
                    break
                run.meter.waited()
            if stopped:
                break
            if pos["batch"] >= per_epoch or pos["step"] >= total:
                record = arch_log.snapshot(model.search_spaces(), epoch, pos["step"])
                if pos["batch"] >= per_epoch:
                    pos["epoch"], pos["batch"] = epoch + 1, 0
                log.info("epoch %d: loss %.4f, arch loss %s, %.1f img/s, data wait %.0f%%", epoch + 1, loss_w,
                         f"{loss_a:.4f}" if arch_on else "frozen", run.meter.images_per_s, 100 * run.meter.wait_fraction)
                if info.is_main:
                    history = arch_log.append(history_path, record)
                    if cfg.output.image_every:  # else drawn once at the end (a plot takes seconds on a CPU)
                        arch_log.plot(history, run.dir / "arch_evolution.png")
                checkpoint()
    bar.close()
    genotype = checkpoint()
    if info.is_main:
        if not cfg.output.image_every and history_path.exists():
            arch_log.plot(arch_log.load(history_path), run.dir / "arch_evolution.png")
        from frsengine.nas.draw import draw_genotype
        draw_genotype(genotype, run.dir / "genotype.png")
    elapsed = time.perf_counter() - run.started
    summary = {"status": "interrupted" if stopped else "done", "steps": pos["step"], "epochs": pos["epoch"],
               "loss_weights": loss_w, "loss_arch": loss_a, "images_per_s": run.meter.images_per_s,
               "data_wait": run.meter.wait_fraction, "seconds": elapsed,
               "genotype": str(run.dir / "genotype.json")}
    run.summary(f"search {summary['status']}: {pos['step']} steps, {pos['epoch']} epochs in {elapsed:.0f} s, "
                f"loss {loss_w:.4f} (arch {loss_a:.4f}), {run.meter.images_per_s:.1f} img/s, "
                f"data wait {run.meter.wait_fraction:.0%}; genotype {summary['genotype']}"
                + (f"; resume with --resume {run.dir}" if stopped else ""))
    return summary

