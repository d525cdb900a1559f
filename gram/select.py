"""Width scaling: pick one answer out of N sampled trajectories."""
from __future__ import annotations

import torch


def majority_vote(samples: torch.Tensor) -> torch.Tensor:
    """samples (P, N, S) -> (P,) index of a sample holding the most frequent answer.
    Ties go to the answer that appeared first, so the choice is deterministic."""
    P, N, _ = samples.shape
    same = (samples[:, :, None, :] == samples[:, None, :, :]).all(-1)  # (P, N, N)
    votes = same.sum(-1)  # (P, N): how many samples share each sample's answer
    first = torch.arange(N).expand(P, N)
    # the lowest index among the most-voted: max votes, then min index
    return (votes * N - first).argmax(1)


def best_of_n(values: torch.Tensor) -> torch.Tensor:
    """values (P, N) LPRM values -> (P,) index of the highest; ties to the lowest index."""
    return values.argmax(1)
