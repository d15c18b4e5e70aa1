"""Train the encoder, embed the base, build segments and the index, and write one bundle.

    python train.py                                  # everything, on the generated default log
    python train.py data.path=EVENTS out_dir=DIR     # your log
    python train.py stage=embed bundle=DIR data.path=NEW out_dir=DIR2   # nightly: embed with a saved model
    python train.py stage=forecast bundle=DIR horizon_days=365 out_dir=DIR2  # another horizon, no retraining
    python train.py stage=recommend bundle=DIR recommend.new_only=true out_dir=DIR2  # other recommendations
    python train.py -m model=gru,transformer model.dim=64,128           # a sweep
"""

from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import engine.config  # noqa: F401  registers the config schema
from engine import pipeline
from engine.config import validate

log = logging.getLogger("train")

STAGES = {
    "all": pipeline.run_all,
    "fit": pipeline.run_fit,
    "embed": pipeline.run_embed,
    "segment": pipeline.run_segment,
    "evaluate": pipeline.run_evaluate,
    "forecast": pipeline.run_forecast,
    "recommend": pipeline.run_recommend,
}


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig):
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:  # one bundle per sweep job, not one overwritten N times
        cfg.out_dir = f"{cfg.out_dir}/{hydra_cfg.job.num}"
    validate(cfg)
    result = STAGES[cfg.stage](cfg)
    if result is not None:
        log.info("stage=%s wrote %s", cfg.stage, result)
    return result


if __name__ == "__main__":
    main()
