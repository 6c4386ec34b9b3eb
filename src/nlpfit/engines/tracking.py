"""`--report-to`: the trackers both engines send a run's figures to, under the same names.

Every `--logging-steps N` optimizer steps: `train/loss`, `train/learning_rate`, `train/grad_norm`,
`train/tokens_per_second`, `train/tokens_seen` and `train/epoch`; at every evaluation `eval/<metric>` and `train/epoch`.
These are the names Trainer's integrations write (they turn `loss` into `train/loss` and `eval_f1`
into `eval/f1`), so the accelerate engine writes the same through accelerate's trackers
(`Accelerator(log_with=..., project_dir=...)`), and the trainer engine gets them from Trainer's
`report_to` (W&B), its TensorBoard callback pointed at the same folder, and its MLflow callback given
the same names.  TensorBoard event files go to `OUT/runs/<OUT's name>/`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nlpfit import NlpfitError

TRACKERS = ("tensorboard", "wandb", "mlflow")
TRAIN_KEYS = ("loss", "learning_rate", "grad_norm", "tokens_per_second", "tokens_seen", "epoch")


def trackers(report_to) -> list[str]:
    return list(dict.fromkeys(t for t in report_to if t != "none"))


def check(report_to) -> None:
    """One error line for a tracker that cannot run, before anything loads."""
    names = trackers(report_to)
    if names and "none" in report_to:
        raise NlpfitError(f"--report-to none: cannot be combined with --report-to {names[0]}")
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise NlpfitError(f'--report-to {name}: {name} is not installed (pip install "nlpfit[{name}]")')


def hparams(cfg) -> dict:
    """The run's flat configuration, as trackers record it."""
    return {k: v for k, v in cfg.to_dict().items() if isinstance(v, (bool, int, float, str))}


def train_scalars(entry: dict) -> dict:
    """The tracker record of one log line (an entry of metrics.json's `log`)."""
    return {f"train/{k}": entry[k] for k in TRAIN_KEYS if entry.get(k) is not None}


def eval_scalars(flat: dict, epoch: float) -> dict:
    """The tracker record of one evaluation (its flat metrics)."""
    record = {f"eval/{k}": v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**record, "train/epoch": epoch}


def trainer_callbacks(names: list[str], log_dir: Path, purge_step: int | None) -> tuple[list[str], list]:
    """(Trainer's report_to, extra callbacks) for the trainer engine: W&B through report_to; TensorBoard
    writing to `log_dir` (transformers 5 has no logging_dir argument), skipping the events of steps that
    a resumed run repeats; MLflow given the names TensorBoard and W&B get."""
    from transformers.integrations import MLflowCallback, TensorBoardCallback
    from transformers.integrations.integration_utils import rewrite_logs

    class TensorBoard(TensorBoardCallback):
        def __init__(self):
            super().__init__()
            self.logging_dir, self.purge_step = str(log_dir), purge_step

        def _init_summary_writer(self, args):
            # the first writer of a resumed run hides the events past its checkpoint (they are redone)
            self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir, purge_step=self.purge_step)
            self.purge_step = None

    class MLflow(MLflowCallback):
        def on_log(self, args, state, control, logs, model=None, **kwargs):
            super().on_log(args, state, control, rewrite_logs(logs), model=model, **kwargs)

    callbacks = [TensorBoard()] if "tensorboard" in names else []
    callbacks += [MLflow()] if "mlflow" in names else []
    return [n for n in names if n == "wandb"] or ["none"], callbacks
