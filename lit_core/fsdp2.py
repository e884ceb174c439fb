"""FSDP2 over every process, sized by the trainer: ``--trainer.devices N`` (and ``num_nodes``) alone.

Lightning's ``ModelParallelStrategy`` defaults to ``data_parallel_size = num_nodes`` and
``tensor_parallel_size = devices`` (tensor parallelism inside a node); pure FSDP needs
``data_parallel_size = devices x num_nodes`` and no tensor parallelism, which this subclass sets
when the processes are known. The LightningModule applies ``fully_shard`` in ``configure_model``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Optional

from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.constants import default_pg_timeout


class FSDP2Strategy(ModelParallelStrategy):
    """Fully sharded data parallel (FSDP2) over all ``devices x num_nodes`` processes.

    Args:
        save_distributed_checkpoint: Save one shard per rank (a folder per checkpoint); ``False``
            gathers a single-file checkpoint on rank 0.
        process_group_backend: ``nccl`` / ``gloo``; ``None`` picks by accelerator.
        timeout: Collective-operation timeout.
    """

    def __init__(self, save_distributed_checkpoint: bool = True, process_group_backend: Optional[str] = None,
                 timeout: Optional[timedelta] = default_pg_timeout) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1,
                         save_distributed_checkpoint=save_distributed_checkpoint,
                         process_group_backend=process_group_backend, timeout=timeout)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()
