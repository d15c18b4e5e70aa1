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

import engine.config  # noqa: F401  registers the config schema (light: no torch, Lightning or FAISS)
from engine.config import validate

log = logging.getLogger("train")

# stage -> the function of engine.pipeline that runs it; the pipeline (torch, Lightning, FAISS) is imported only
# once the config is valid, so --help and config errors answer at once
STAGES = {"all": "run_all", "fit": "run_fit", "embed": "run_embed", "segment": "run_segment",
          "evaluate": "run_evaluate", "forecast": "run_forecast", "recommend": "run_recommend"}


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig):
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:  # one bundle per sweep job, not one overwritten N times
        cfg.out_dir = f"{cfg.out_dir}/{hydra_cfg.job.num}"
    validate(cfg)
    from engine import pipeline

    result = getattr(pipeline, STAGES[cfg.stage])(cfg)
    if result is not None:
        log.info("stage=%s wrote %s", cfg.stage, result)
    return result


if __name__ == "__main__":
    import sys

    if problems := engine.config.unknown_keys(sys.argv[1:]):  # before Hydra's own, which names no alternative
        sys.exit("train.py: " + "\n".join(problems))
    main()
