"""Component dictionary: crops and pastes, k-means, lookup shapes and gradients, file round
trip, ONNX export."""
import numpy as np
import pytest
import torch

from frsengine.errors import FrsError
from frsengine.priors.dictionary import (
    ComponentEncoder, DictionaryConfig, DictionaryLookup, build_dictionary, crop_components, kmeans,
    load_dictionary, paste_grid, save_dictionary,
)
from frsengine.priors.rasterize import COMPONENTS, component_boxes
from tests.priors.conftest import template_landmarks

CFG = DictionaryConfig(channels=8, hidden=8, crop=16, atoms=4, temperature=0.05, kmeans_iters=10)


def _faces(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(n, 3, size, size, generator=g)
    pts = torch.from_numpy(template_landmarks(size))[None].repeat(n, 1, 1)
    pts = pts + torch.randn(n, 1, 2, generator=g) * 1.5  # faces shifted a little
    return imgs, component_boxes(pts)


def _lookup(cfg: DictionaryConfig = CFG, seed: int = 0) -> DictionaryLookup:
    g = torch.Generator().manual_seed(seed)
    atoms = torch.rand(len(COMPONENTS), cfg.atoms, cfg.channels, cfg.feat, cfg.feat, generator=g)
    return DictionaryLookup(atoms, cfg)


def test_crop_of_an_aligned_box_is_the_pixels():
    img = torch.arange(3 * 40 * 50, dtype=torch.float32).reshape(1, 3, 40, 50)
    x0, y0, side = 7, 11, 16
    box = torch.tensor([[[x0 + side / 2 - 0.5, y0 + side / 2 - 0.5, float(side)]]])
    crop = crop_components(img, box, side)
    assert crop.shape == (1, 1, 3, side, side)
    assert torch.allclose(crop[0, 0], img[0, :, y0:y0 + side, x0:x0 + side])


def test_paste_fills_exactly_the_box():
    box = torch.tensor([[20.0, 30.0, 10.0]])
    grid, inside = paste_grid(box, 64, 64)
    assert grid.shape == (1, 64, 64, 2) and inside.shape == (1, 1, 64, 64)
    ys, xs = torch.nonzero(inside[0, 0], as_tuple=True)
    assert xs.min() == 15 and xs.max() == 25 and ys.min() == 25 and ys.max() == 35
    assert torch.allclose(grid[0, 30, 20], torch.zeros(2))


def test_kmeans_finds_separated_blobs_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(50, 2, generator=g) for c in centres])
    cent, assign = kmeans(x, 3, seed=1)
    for i in range(3):
        assert len(set(assign[i * 50:(i + 1) * 50].tolist())) == 1
    found = sorted(cent.round().tolist())
    assert found == sorted(centres.tolist())
    cent2, assign2 = kmeans(x, 3, seed=1)
    assert torch.equal(cent, cent2) and torch.equal(assign, assign2)
    with pytest.raises(FrsError, match="at least K"):
        kmeans(x[:2], 3)


def test_lookup_shapes_outside_boxes_and_attention():
    lookup = _lookup()
    imgs, boxes = _faces(3)
    out = lookup(imgs, boxes)
    assert out.shape == (3, CFG.channels, 64, 64)
    covered = torch.zeros(3, 1, 64, 64)
    for i in range(len(COMPONENTS)):
        covered = covered + paste_grid(boxes[:, i], 64, 64)[1]
    assert float(out[covered.expand_as(out) == 0].abs().max()) == 0.0
    assert float(out[covered.expand_as(out) > 0].abs().mean()) > 0
    feats, attn = lookup.component_features(imgs, boxes)
    assert feats.shape == (3, len(COMPONENTS), CFG.channels, CFG.feat, CFG.feat)
    assert attn.shape == (3, len(COMPONENTS), CFG.atoms)
    assert torch.allclose(attn.sum(-1), torch.ones(3, len(COMPONENTS)))


def test_lookup_returns_the_matching_atom():
    """Atoms made from the query's own features: a sharp softmax picks each face's own atom."""
    cfg = DictionaryConfig(channels=8, hidden=8, crop=16, atoms=3, temperature=1e-3, adain=False)
    imgs, boxes = _faces(3, seed=5)
    enc = ComponentEncoder(cfg.channels, cfg.hidden, cfg.seed)
    crops = crop_components(imgs, boxes, cfg.crop)
    feats = enc(crops.reshape(-1, 3, cfg.crop, cfg.crop)).reshape(3, len(COMPONENTS), cfg.channels, cfg.feat, cfg.feat)
    lookup = DictionaryLookup(feats.permute(1, 0, 2, 3, 4).contiguous(), cfg, enc)
    got, attn = lookup.component_features(imgs, boxes)
    assert torch.equal(attn.argmax(-1), torch.arange(3)[:, None].expand(3, len(COMPONENTS)))
    assert torch.allclose(got, feats, atol=1e-4)


def test_lookup_gradients_reach_image_and_boxes():
    lookup = _lookup()
    imgs, boxes = _faces(2)
    imgs.requires_grad_()
    boxes = boxes.clone().requires_grad_()
    out = lookup(imgs, boxes)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    assert imgs.grad is not None and float(imgs.grad.abs().sum()) > 0
    assert boxes.grad is not None and torch.isfinite(boxes.grad).all() and float(boxes.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in lookup.parameters())


def test_build_save_load_round_trip(tmp_path):
    imgs, boxes = _faces(12, seed=2)
    tensors = build_dictionary((imgs * 255).round().to(torch.uint8), boxes, CFG, batch_size=5)
    assert tensors["atoms.nose"].shape == (CFG.atoms, CFG.channels, CFG.feat, CFG.feat)
    assert tensors["medoid.mouth"].shape == (CFG.atoms, 3, CFG.crop, CFG.crop)
    assert tensors["medoid.mouth"].dtype == torch.uint8
    assert int(tensors["counts.eye_left"].sum()) == 12
    path = save_dictionary(tmp_path / "d.safetensors", tensors, CFG, {"faces": 12})
    assert [p.name for p in tmp_path.iterdir()] == ["d.safetensors"]  # no temporary left behind
    lookup, loaded, info = load_dictionary(path)
    assert info == {"faces": 12} and lookup.config == CFG
    fresh = DictionaryLookup(torch.stack([tensors[f"atoms.{c}"] for c in COMPONENTS]), CFG)
    x = imgs[:2].float()
    assert torch.allclose(lookup(x, boxes[:2]), fresh(x, boxes[:2]), atol=1e-6)
    # rebuilding with the same seed gives the same dictionary
    again = build_dictionary((imgs * 255).round().to(torch.uint8), boxes, CFG, batch_size=12)
    assert all(torch.equal(again[k], tensors[k]) for k in tensors)


def test_load_refuses_other_files(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(FrsError, match="not a safetensors"):
        load_dictionary(bad)
    with pytest.raises(FrsError, match="does not exist"):
        load_dictionary(tmp_path / "missing.safetensors")


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from frsengine.priors.export import export_onnx

    lookup = _lookup().eval()
    imgs, boxes = _faces(2, seed=3)
    path = export_onnx(lookup, (imgs, boxes), tmp_path / "dict.onnx", ["images", "boxes"], ["features"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    imgs2, boxes2 = _faces(3, seed=4)  # another batch size: the batch axis is dynamic
    for x, b in ((imgs, boxes), (imgs2, boxes2)):
        (got,) = sess.run(None, {"images": x.numpy(), "boxes": b.numpy()})
        want = lookup(x, b).detach().numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4


def test_prior_network_one_graph_and_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from frsengine.priors.export import export_onnx
    from frsengine.priors.module import PriorNetwork
    from frsengine.priors.student import StudentConfig, StudentPriorNet

    net = PriorNetwork(StudentPriorNet(StudentConfig(widths=(4, 6, 8, 8), size=64)), _lookup()).eval()
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    pri = net(x)
    assert pri.parsing.shape == (2, 10, 64, 64) and torch.allclose(pri.parsing.sum(1), torch.ones(2, 64, 64))
    assert pri.heatmaps.shape == (2, 68, 64, 64) and pri.dictionary.shape == (2, CFG.channels, 64, 64)
    (pri.parsing.std() + pri.heatmaps.mean() + pri.dictionary.mean()).backward()
    assert float(x.grad.abs().sum()) > 0
    path = export_onnx(net, (x.detach(),), tmp_path / "priors.onnx", ["face"], list(pri._fields))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"face": x.detach().numpy()})
    with torch.no_grad():
        want = net(x.detach())
    for g, w in zip(got, want):
        assert np.abs(g - w.numpy()).max() <= 1e-4


def test_mfpsnet_runs_with_the_prior_network_in_graph():
    """Default MFPSNet channel sizes equal the priors' (10 parsing, 68 heatmaps, dictionary C): the
    whole two-pass network, priors included, is one differentiable graph."""
    from dataclasses import replace

    from frsengine.models import build_supernet, get_config
    from frsengine.priors.module import PriorNetwork
    from frsengine.priors.student import StudentConfig, StudentPriorNet

    cfg = get_config("mfpsnet", "tiny")
    priors = tuple(replace(p, channels=c) for p, c in zip(cfg.priors, (10, 68, CFG.channels)))
    model = build_supernet("mfpsnet", "tiny", priors=priors)
    assert [p.channels for p in get_config("mfpsnet").priors] == [10, 68, 64]
    net = PriorNetwork(StudentPriorNet(StudentConfig(widths=(4, 6, 8, 8), size=32)), _lookup())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out1, out2 = model(x, prior_fn=net.mfpsnet_priors)
    assert out2.shape == x.shape
    out2.mean().backward()
    assert float(x.grad.abs().sum()) > 0 and net.student.parameters().__next__().grad is not None
