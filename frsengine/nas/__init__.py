"""Search spaces (cells, grid), decoding and genotypes of FRSNet / MFPSNet."""
from frsengine.nas.cell import DerivedCell, SearchCell, aggregate_branches, edge_index, num_edges
from frsengine.nas.decode import decode, decode_cell, decode_path, decode_space
from frsengine.nas.genotype import (Genotype, GenotypeError, GenotypeVersionError, SpaceGenotype,
                                    genotype_from_dict, load_genotype, validate_genotype)
from frsengine.nas.grid import GridPathNet, GridSearchSpace, beta_mask, normalize_betas
from frsengine.nas.ops import OP_SETS, MixedOp, get_op_set, mixed_op
from frsengine.nas.space import SpaceConfig

__all__ = ["DerivedCell", "SearchCell", "aggregate_branches", "edge_index", "num_edges", "decode",
           "decode_cell", "decode_path", "decode_space", "Genotype", "GenotypeError",
           "GenotypeVersionError", "SpaceGenotype", "genotype_from_dict", "load_genotype",
           "validate_genotype", "GridPathNet", "GridSearchSpace", "beta_mask", "normalize_betas",
           "OP_SETS", "MixedOp", "get_op_set", "mixed_op", "SpaceConfig"]
