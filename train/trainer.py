"""`SFTTrainer` fed by a packing batch sampler: one row of several examples per device and step.

Owns: the training DataLoader built on `PackedBatchSampler` (accelerate shards its bins across ranks), the
`num_tokens` metric for (4, 1, L) position ids (TRL counts `position_ids.size(1)`, which is 1 for packed
Qwen2.5-VL rows), and which positions TRL's fused LM head scores on CPU (`score_supervised_positions_on_cpu`).
Everything else, the loss included, is TRL's.
Does not own: the collator (train/collator.py) or the bins (train/sampler.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler
from trl import SFTTrainer


def score_supervised_positions_on_cpu() -> bool:
    """Make TRL's fused LM head score only the positions that have a label on CPU, as it already does on CUDA.

    TRL 1.x scores only supervised positions where it runs Triton, and every position elsewhere, so that a compiler
    (Neuron) sees fixed shapes. On CPU nothing is compiled, and every position costs a projection onto the whole
    vocabulary (151,665 entries for Qwen2.5-VL) and its backward, though a document QA row supervises only its
    answer: that was most of a CPU step. The loss, gradients, entropy and accuracy stay the same
    (tests/test_train_packing.py).
    Returns False, changing nothing, where this TRL has no such switch."""
    from trl.trainer import utils

    scores_all = getattr(utils, "_use_triton", None)
    if scores_all is None:
        return False
    if not getattr(scores_all, "compacts_cpu", False):

        def compact(device: torch.device) -> bool:
            return device.type == "cpu" or bool(scores_all(device))

        compact.compacts_cpu = True  # type: ignore[attr-defined]
        utils._use_triton = compact
    return True


class PackedSFTTrainer(SFTTrainer):
    """SFTTrainer whose training batches are the bins of `batch_sampler`."""

    def __init__(self, *args: Any, batch_sampler: Sampler[list[int]], **kwargs: Any) -> None:
        self.packed_batch_sampler = batch_sampler
        super().__init__(*args, **kwargs)

    def get_train_dataloader(self) -> DataLoader:
        """DataLoader over the bins; `accelerator.prepare` gives each rank every world_size-th bin."""
        dataset = self._remove_unused_columns(self.train_dataset, description="training")
        workers = self.args.dataloader_num_workers
        loader = DataLoader(
            dataset,
            batch_sampler=self.packed_batch_sampler,
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None,
        )
        return self.accelerator.prepare(loader)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kwargs: Any) -> Any:
        """TRL's loss; then count the packed row's tokens instead of the size of position_ids' dim 1."""
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, **kwargs)
        positions = inputs.get("position_ids")
        if self.model.training and positions is not None and positions.ndim == 3:
            extra = torch.tensor(inputs["input_ids"].numel() - positions.size(1), device=positions.device)
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(extra).sum().item())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result
