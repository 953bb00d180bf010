import copy
import json

import pytest

from frsengine.errors import FrsError
from frsengine.nas.genotype import (Genotype, GenotypeError, GenotypeVersionError, SpaceGenotype,
                                    genotype_from_dict, load_genotype)

CELL = ((0, 0, "conv_3x3"), (0, 1, "skip_connect"), (1, 1, "conv_5x5"), (1, 2, "conv_7x7"),
        (2, 2, "conv_3x3"), (2, 3, "conv_3x3"))


def frsnet_genotype():
    return Genotype("frsnet", {"upsample": SpaceGenotype("upsample", (1, 2, 2, 3, 3, 2), CELL)},
                    meta={"source": "hand-written test genotype"})


def test_json_round_trip(tmp_path):
    g = frsnet_genotype()
    path = tmp_path / "g.json"
    g.save(path)
    back = load_genotype(path)
    assert back == g
    assert back.to_json() == g.to_json()
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["format"] == "frsengine.genotype"
    assert data["spaces"]["upsample"]["cell"][2] == {"block": 1, "input": 1, "op": "conv_5x5"}


def test_edges_are_stored_explicitly_and_order_does_not_matter():
    d = frsnet_genotype().to_dict()
    d["spaces"]["upsample"]["cell"].reverse()
    assert genotype_from_dict(d).spaces["upsample"].cell == CELL


def mutate(fn):
    d = copy.deepcopy(frsnet_genotype().to_dict())
    fn(d)
    return d


def sp(d):
    return d["spaces"]["upsample"]


BAD = [
    (lambda d: sp(d)["cell"][0].update(op="conv_9x9"), GenotypeError, "unknown op 'conv_9x9'"),
    (lambda d: sp(d)["cell"].pop(), GenotypeError, "block 2 has 1 edges, expected exactly 2"),
    (lambda d: sp(d)["cell"].append({"block": 0, "input": 1, "op": "conv_3x3"}), GenotypeError,
     "block 0 has 3 edges"),
    (lambda d: sp(d)["cell"][0].update(input=3), GenotypeError, "block 0: input 3 out of range 0..1"),
    (lambda d: sp(d)["cell"][1].update(input=0), GenotypeError, "block 0 uses input 0 twice"),
    (lambda d: sp(d).update(path=[1, 3, 3, 3, 3, 3]), GenotypeError, "jumps from level 1 to 3"),
    (lambda d: sp(d).update(path=[2, 2, 2, 2, 2, 2]), GenotypeError, "jumps from level 0 to 2"),
    (lambda d: sp(d).update(path=[1, 2, 3, 4, 3, 3]), GenotypeError, "level 4 outside 0..3"),
    (lambda d: d.update(version=2), GenotypeVersionError, "version 2 is not supported"),
    (lambda d: d.update(format="something"), GenotypeError, "not a genotype file"),
    (lambda d: d.update(network="resnet"), GenotypeError, "unknown network 'resnet'"),
    (lambda d: sp(d).update(kind="prior"), GenotypeError, "frsnet needs exactly one space 'upsample'"),
    (lambda d: sp(d).update(op_set="huge"), GenotypeError, "unknown op set 'huge'"),
    (lambda d: sp(d).update(block_multiplier=4), GenotypeError, "block_multiplier must be in 1..3"),
    (lambda d: sp(d).pop("path"), GenotypeError, "missing field(s) path"),
    (lambda d: sp(d).update(extra=1), GenotypeError, "unknown field(s) extra"),
    (lambda d: sp(d)["cell"][0].pop("op"), GenotypeError, "cell edge 0 must be an object"),
    (lambda d: sp(d).update(op_set="large"), GenotypeError, "unknown op 'conv_3x3' for op set 'large'"),
]


@pytest.mark.parametrize("fn,cls,msg", BAD)
def test_bad_genotypes_are_rejected_with_a_clear_one_line_message(fn, cls, msg, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(mutate(fn)))
    with pytest.raises(cls) as info:
        load_genotype(path)
    text = str(info.value)
    assert msg in text and "\n" not in text and text.startswith(str(path))
    assert isinstance(info.value, FrsError)


def test_zero_op_cannot_be_chosen():
    d = mutate(lambda d: sp(d).update(op_set="large"))
    for e in sp(d)["cell"]:
        e["op"] = "sep_conv_3x3"
    sp(d)["cell"][0]["op"] = "none"
    with pytest.raises(GenotypeError, match="unknown op 'none'"):
        genotype_from_dict(d)


def test_not_json_and_missing_file(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{oops")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        load_genotype(p)
    with pytest.raises(GenotypeError, match="cannot read"):
        load_genotype(tmp_path / "missing.json")


def test_mfpsnet_needs_upsample_fusion_and_a_prior():
    spaces = {"upsample": SpaceGenotype("upsample", (1, 1), CELL), "fusion": SpaceGenotype("fusion", (0, 0), CELL)}
    d = Genotype("mfpsnet", spaces).to_dict()
    with pytest.raises(GenotypeError, match="at least one prior space"):
        genotype_from_dict(d)
    spaces["parsing"] = SpaceGenotype("prior", (0, 1), CELL)
    assert genotype_from_dict(Genotype("mfpsnet", spaces).to_dict()).spaces["parsing"].path == (0, 1)
