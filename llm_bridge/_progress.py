"""The libraries' own progress bars (transformers, datasets, tqdm users such as TRL), on or off
inside a block: one switch, so that ``progress=False`` means quiet everywhere."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["library_progress"]


@contextlib.contextmanager
def library_progress(show: bool) -> Iterator[None]:
    """Inside the block, the progress bars of transformers ("Loading weights"), of ``datasets``
    and of tqdm users that honour ``TQDM_DISABLE`` (TRL's reference precompute) are shown when
    ``show`` is true and hidden otherwise; afterwards all are as they were."""
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as hf_logging

    was_hf, was_ds = (
        hf_logging.is_progress_bar_enabled(),
        datasets_logging.is_progress_bar_enabled(),
    )
    env = os.environ.get("TQDM_DISABLE")
    if not show:
        hf_logging.disable_progress_bar()
        datasets_logging.disable_progress_bar()
        os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was_hf else hf_logging.disable_progress_bar)()
        (
            datasets_logging.enable_progress_bar
            if was_ds
            else datasets_logging.disable_progress_bar
        )()
        if env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = env
