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
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import engine.config  # noqa: F401  registers the config schema (light: no torch, Lightning or FAISS)
from engine.config import ConfigError, validate

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
    try:
        validate(cfg)
    except ConfigError as err:  # one line naming the key, not a traceback
        sys.exit(f"train.py: {err}")
    from engine import pipeline

    result = getattr(pipeline, STAGES[cfg.stage])(cfg)
    if result is not None:
        log.info("stage=%s wrote %s%s", cfg.stage, result, next_steps(result))
    return result


def next_steps(bundle) -> str:
    """Where the report is and the commands to try next, for the bundle just written."""
    lines = []
    if (bundle / "report.html").exists():
        lines.append(f"report: {bundle / 'report.html'}")
    lines += [f"serve it:         python serve.py bundle={bundle}",
              f"a segment as CSV: python -m engine.audience --bundle {bundle} segment 0 --out segment0.csv",
              f"a customer:       python -m engine.audience --bundle {bundle} customer ID"]
    if (bundle / "recommendations.parquet").exists():
        lines.append(f"discovery lists: python train.py stage=recommend bundle={bundle} recommend.new_only=true "
                     f"out_dir={bundle}-new")
    if not (bundle / "evaluation.json").exists():
        lines.append("quality vs baselines: python train.py stage=evaluate data.cutoff=YYYY-MM-DD [data.path=...]")
    return "".join(f"\n  {line}" for line in lines)


if __name__ == "__main__":
    if problems := engine.config.unknown_keys(sys.argv[1:]):  # before Hydra's own, which names no alternative
        sys.exit("train.py: " + "\n".join(problems))
    main()
