"""Search and retrain pipelines (Algorithm 1): configs, the loops, checkpoints, data parallelism.

    from frsengine.train import load_config, search, retrain
    summary = search(load_config("configs/search/frsnet-tiny.yaml", ["schedule.epochs=2"], kind="search"))
"""
from frsengine.train.config import ConfigError, RunConfig, load_config
from frsengine.train.retrain import retrain
from frsengine.train.search import search

__all__ = ["ConfigError", "RunConfig", "load_config", "retrain", "search"]
