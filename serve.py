"""Serve a bundle over HTTP: segments, customers, real-time scoring, lookalikes, erasure, reload.

python serve.py bundle=outputs/bundle                  # http://127.0.0.1:8000/docs
python serve.py bundle=DIR host=0.0.0.0 port=8080 device=cuda token=SECRET
"""

from __future__ import annotations

import os

import hydra
import torch
import uvicorn
from omegaconf import DictConfig

import engine.service.config  # noqa: F401  registers the config schema
from engine.service import create_app


@hydra.main(config_path="conf", config_name="serve", version_base=None)
def main(cfg: DictConfig) -> None:
    torch.set_num_threads(cfg.torch_threads)
    token = cfg.token or os.environ.get("SEGMENT_ENGINE_TOKEN")
    app = create_app(cfg.bundle, device=cfg.device, token=token, open_writes=cfg.open_writes)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)


if __name__ == "__main__":
    main()
