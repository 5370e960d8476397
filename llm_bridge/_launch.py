"""One sweep run trained by N data-parallel processes, one per GPU.

``train_in_processes(config, spec, processes)`` writes what the run needs to
``runs/<run_id>/launch.json`` and starts ``python -m llm_bridge._launch --torchrun FILE``, which
runs torchrun in-process as::

    torchrun --standalone --nproc-per-node N -m llm_bridge._launch FILE

(torchrun: the launcher ``accelerate launch --multi_gpu`` runs; ``--standalone`` picks a free
port, so several runs on one node do not collide, and it also starts N CPU processes, where
``accelerate launch --cpu`` needs MPI). Each process trains the same run (``train_run``);
``train_dpo`` splits each batch over them, and only the main process writes the run directory.
The caller then loads the finished training (``train_dpo`` on a finished run directory loads
it) and probes it in one process. The processes' output goes to ``runs/<run_id>/launch.log``.

The launcher and the N processes die with their parent (Linux ``PR_SET_PDEATHSIG``): when the
attempt that started them is killed (a Ray worker, a Slurm job), no orphan trains on beside the
attempt that takes the run over.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ._config import to_jsonable
from ._grid import RunSpec, SweepConfig
from ._io import write_json


def train_run(config: SweepConfig, spec: RunSpec):
    """Train one grid point's model in its run directory (``train_dpo``; a finished training is
    loaded, an interrupted one resumed); returns ``(TrainResult, tokenizer, dataset)``. Each of
    N data-parallel processes runs this for the same run (``_launch``)."""
    from .data import make_dataset
    from .models import load_model
    from .train import train_dpo

    dataset = make_dataset(spec.order, spec.p12, spec.p23, config.n, spec.seed, config.exact)
    train_config = config.train_config(spec)
    model, tokenizer = load_model(
        config.model,
        device=train_config.device,
        trust_remote_code=config.trust_remote_code,
        progress=False,
    )
    return train_dpo(model, tokenizer, dataset, train_config, progress=False), tokenizer, dataset


LOG_TAIL = 40
"""Lines of the processes' log quoted when they fail."""


def train_in_processes(config, spec, processes: int) -> None:
    """Train ``spec``'s run of ``config`` in ``processes`` processes; returns once its training
    is finished (and on disk). Raises RuntimeError with the end of their log when they fail."""
    import torch

    from .results import run_dir

    root = run_dir(config.out, spec.run_id)
    task = write_json(
        root / "launch.json",
        {"config": to_jsonable(config), "spec": spec._asdict(), "threads": torch.get_num_threads()},
    )
    command = [sys.executable, "-m", "llm_bridge._launch", "--torchrun", str(processes), str(task)]
    log = root / "launch.log"
    with open(log, "w", encoding="utf-8") as fh:
        done = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-LOG_TAIL:])
        raise RuntimeError(
            f"training {spec.run_id} in {processes} processes failed (exit {done.returncode}; "
            f"log: {log}):\n{tail}"
        )


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (elsewhere: nothing)."""
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before we asked
            os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """``--torchrun N FILE``: start the N processes; ``FILE``: be one of them, training the run
    that FILE describes."""
    argv = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    if argv[0] == "--torchrun":
        from torch.distributed.run import main as torchrun

        processes, path = argv[1:]
        torchrun(
            ["--standalone", f"--nproc-per-node={processes}", "-m", "llm_bridge._launch", path]
        )
        return 0

    import torch

    (path,) = argv
    task = json.loads(Path(path).read_text(encoding="utf-8"))
    torch.set_num_threads(task["threads"])
    spec = RunSpec(**{**task["spec"], "order": tuple(task["spec"]["order"])})
    train_run(SweepConfig(**task["config"]), spec)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
