"""CPU threads for torch: ``--threads N`` wins, else OMP_NUM_THREADS (torch reads it itself), else torch's
default (one per physical core). On a machine shared with other jobs, 1 per process avoids oversubscription."""
from __future__ import annotations

import argparse

HELP = "CPU threads for torch (default: OMP_NUM_THREADS if set, else torch's own choice)"


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="N", help=HELP)


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")


def set_threads(threads: int | None) -> None:
    """Sets torch's intra-op threads to ``threads``; None leaves torch's choice (and OMP_NUM_THREADS) alone."""
    check_threads(threads)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
