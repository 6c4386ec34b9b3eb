"""`--push-to-hub`: OUT uploaded once it is saved, and with `--hub-strategy every-save` each
checkpoint uploaded in the background while training goes on.

Checkpoint uploads run on huggingface_hub's own worker thread (`HfApi.run_as_future`: one job at a
time, in order), so a step never waits for the network, as with Trainer's `hub_strategy`.  Each
checkpoint goes to the repository's `last-checkpoint/` folder (Trainer's name for it): download
it into `.OUT.nlpfit-tmp/checkpoints/` to `--resume` elsewhere.  A failed checkpoint upload is one
warning and training goes on; the final upload first waits for the queued ones, and its failure is
one error line (OUT stays saved).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nlpfit import NlpfitError
from nlpfit.log import info, warn


def repo_name(cfg) -> str:
    return cfg.hub_model_id or cfg.out.name


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def push(cfg) -> None:
    """Upload OUT (the final model folder)."""
    from huggingface_hub import HfApi

    repo = repo_name(cfg)
    try:
        api = HfApi()
        url = api.create_repo(repo, exist_ok=True).repo_id
        api.upload_folder(folder_path=str(cfg.out), repo_id=url, commit_message="nlpfit: upload model")
    except Exception as exc:
        raise NlpfitError(f"--push-to-hub: {cfg.out} is saved, but the upload to {repo} failed: "
                          f"{first_line(exc)}") from None
    info(f"pushed {cfg.out} to https://huggingface.co/{url}")


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


class CheckpointUploads:
    """Called with each new checkpoint on the main process: queues its upload and returns at once.

    The checkpoint is first snapshotted into `spool` with hard links (checkpoint files are never
    rewritten, and `--save-total-limit` may delete the folder while its upload waits)."""

    def __init__(self, cfg, spool: Path):
        from huggingface_hub import HfApi

        self.api, self.repo, self.spool = HfApi(), repo_name(cfg), spool
        self.futures: list = []

    def __call__(self, checkpoint: Path) -> None:
        snapshot = self.spool / checkpoint.name
        shutil.rmtree(snapshot, ignore_errors=True)
        shutil.copytree(checkpoint, snapshot, copy_function=_link_or_copy)
        future = self.api.run_as_future(self._upload, snapshot)
        future.add_done_callback(lambda f: self._done(snapshot, f))
        self.futures.append(future)

    def _upload(self, snapshot: Path) -> None:
        repo_id = self.api.create_repo(self.repo, exist_ok=True).repo_id
        self.api.upload_folder(folder_path=str(snapshot), repo_id=repo_id, path_in_repo="last-checkpoint",
                               delete_patterns="*", commit_message=f"nlpfit: {snapshot.name}")

    def _done(self, snapshot: Path, future) -> None:
        shutil.rmtree(snapshot, ignore_errors=True)
        if future.exception() is not None:
            warn(f"--hub-strategy every-save: uploading {snapshot.name} to {self.repo} failed "
                 f"({first_line(future.exception())}); training goes on")

    def wait(self) -> None:
        """Wait for every queued upload (the final upload comes after them)."""
        for future in self.futures:
            future.exception()
