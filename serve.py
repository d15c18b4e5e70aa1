"""Serve a bundle over HTTP: segments, customers, real-time scoring, lookalikes, erasure, reload.

python serve.py bundle=outputs/bundle                  # http://127.0.0.1:8000/docs
SEGMENT_ENGINE_TOKEN=SECRET python serve.py bundle=DIR host=0.0.0.0 port=8080 device=cuda
python serve.py bundle=DIR token_file=/run/secrets/segment-engine bundle_root=/srv/bundles

The write token comes from the environment or a file, never the command line (every user of the machine
can read a process's arguments).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
import torch
import uvicorn
from omegaconf import DictConfig

import engine.service.config  # noqa: F401  registers the config schema
from engine.service import create_app

TOKEN_ENV = "SEGMENT_ENGINE_TOKEN"


def write_token(cfg: DictConfig) -> str | None:
    """The write token: token_file's content (stripped), else the environment's; None when neither is set.
    ValueError for token= (on the command line) or a token file that cannot be read or is empty."""
    if cfg.token:
        raise ValueError(f"token=...: a token on the command line is visible to every user in the process "
                         f"list; set the environment variable {TOKEN_ENV} or token_file=PATH instead")
    if cfg.token_file:
        try:
            token = Path(cfg.token_file).read_text().strip()
        except OSError as err:
            raise ValueError(f"token_file={cfg.token_file}: cannot read it ({err.strerror})") from None
        if not token:
            raise ValueError(f"token_file={cfg.token_file}: the file is empty (expected the write token)")
        return token
    return os.environ.get(TOKEN_ENV) or None


@hydra.main(config_path="conf", config_name="serve", version_base=None)
def main(cfg: DictConfig) -> None:
    torch.set_num_threads(cfg.torch_threads)
    try:
        token = write_token(cfg)
    except ValueError as err:
        sys.exit(f"serve.py: {err}")
    app = create_app(cfg.bundle, device=cfg.device, token=token, open_writes=cfg.open_writes,
                     bundle_root=cfg.bundle_root, max_body_bytes=cfg.max_body_bytes, ledger=cfg.ledger)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)


if __name__ == "__main__":
    main()
