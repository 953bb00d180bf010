"""Student prior network: forward/backward, soft-argmax, ONNX export, checkpoints and resume."""
import json

import numpy as np
import pytest
import torch

from frsengine.errors import FrsError
from frsengine.priors.rasterize import NUM_CLASSES, heatmaps
from frsengine.priors.student import StudentConfig, StudentPriorNet, count_parameters
from frsengine.priors.train import TrainConfig, load_checkpoint, save_checkpoint, train_student
from tests.priors.conftest import template_landmarks

TINY = StudentConfig(widths=(4, 6, 8, 8), size=32)


def test_default_size_and_forward_backward():
    model = StudentPriorNet()
    assert 300_000 <= count_parameters(model) <= 1_000_000
    x = torch.rand(2, 3, 128, 128)
    out = model(x)
    assert out.parsing.shape == (2, NUM_CLASSES, 128, 128)
    assert out.heatmaps.shape == (2, 68, 128, 128)
    assert out.landmarks.shape == (2, 68, 2)
    loss = out.parsing.logsumexp(1).mean() + out.heatmaps.pow(2).mean() + out.landmarks.mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_soft_argmax_finds_peaks_in_full_resolution_pixels():
    model = StudentPriorNet(TINY)
    pts_full = torch.tensor([[[10.3, 20.9], [19.0, 12.6]]])
    # log of a Gaussian as the logits: the spatial softmax is that Gaussian, its mean the point
    logits = heatmaps((pts_full + 0.5) / 2 - 0.5, 16, sigma=1.5).clamp(min=1e-30).log()
    got = model.soft_argmax(logits, (32, 32))
    assert torch.allclose(got, pts_full, atol=0.02)
    # and the output heatmaps peak there
    out = model(torch.rand(1, 3, 32, 32))
    assert torch.allclose(out.heatmaps, heatmaps(out.landmarks, 32, TINY.heatmap_sigma), atol=1e-6)


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from frsengine.priors.export import export_onnx

    model = StudentPriorNet(StudentConfig(widths=(8, 8, 16, 16), size=64))
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    path = export_onnx(model, (x,), tmp_path / "student.onnx", ["image"], ["parsing", "heatmaps", "landmarks"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (x, torch.rand(3, 3, 64, 64)):
        got = sess.run(None, {"image": batch.numpy()})
        with torch.no_grad():
            want = model(batch)
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape)
            assert np.abs(g - w.numpy()).max() <= 1e-4


def test_checkpoint_round_trip_is_atomic(tmp_path):
    model = StudentPriorNet(TINY)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.rand(2, 3, 32, 32)).landmarks.sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "s.safetensors", model, opt, {"step": 1, "note": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]
    loaded, meta, opt_tensors = load_checkpoint(path)
    assert meta == {"step": 1, "note": "x"} and loaded.config == TINY and not loaded.training
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert any(k.endswith("exp_avg") for k in opt_tensors)
    (tmp_path / "bad.safetensors").write_text("{}")
    with pytest.raises(FrsError):
        load_checkpoint(tmp_path / "bad.safetensors")


def _tiny_data(n=6):
    g = torch.Generator().manual_seed(0)
    faces = (torch.rand(n, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    pts = np.stack([template_landmarks(32)] * n) + np.random.default_rng(0).normal(0, 0.5, (n, 68, 2)).astype(np.float32)
    return faces, pts.astype(np.float32)


def test_training_resumes_exactly(tmp_path):
    faces, pts = _tiny_data()
    cfg = TrainConfig(steps=4, batch_size=3, checkpoint_every=2, seed=3)
    straight = train_student(faces, pts, tmp_path / "a.safetensors", cfg, TINY, progress=False, report=lambda m: None)

    def interrupt(message):  # stop the run right after its first checkpoint
        raise KeyboardInterrupt

    part = tmp_path / "b.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_student(faces, pts, part, cfg, TINY, progress=False, report=interrupt)
    assert load_checkpoint(part)[1]["step"] == 2
    messages = []
    train_student(faces, pts, part, cfg, TINY, progress=False, report=messages.append)
    assert any("resuming from step 2" in m for m in messages)
    a, meta_a, _ = load_checkpoint(straight)
    b, meta_b, _ = load_checkpoint(part)
    assert meta_a["step"] == meta_b["step"] == 4
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6), k
    with pytest.raises(FrsError, match="other settings"):
        train_student(faces, pts, part, TrainConfig(steps=5, batch_size=3, seed=3), TINY,
                      progress=False, report=lambda m: None)


def test_training_reduces_the_loss(tmp_path):
    faces, pts = _tiny_data(8)
    cfg = TrainConfig(steps=60, batch_size=4, checkpoint_every=20, lr=5e-3, clean_fraction=1.0)
    train_student(faces, pts, tmp_path / "s.safetensors", cfg, TINY, progress=False, report=lambda m: None)
    _, meta, _ = load_checkpoint(tmp_path / "s.safetensors")
    first, last = meta["history"][0], meta["history"][-1]
    assert last[0] == 60 and last[1] < 0.85 * first[1] and last[2] < 0.85 * first[2], json.dumps(meta["history"])
