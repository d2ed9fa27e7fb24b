"""Where a GAN trains: one device, several GPUs (or logical CPUs), several machines; who writes.

``make_strategy``: ``auto`` (MirroredStrategy over the GPUs when there are several, else one device),
``mirrored`` (every GPU, or every logical CPU: ``split_cpu`` checks the path on a CPU), ``multi_worker``
(MultiWorkerMirroredStrategy, the cluster and this process's task read from ``TF_CONFIG`` as
TensorFlow documents it). Whatever the strategy, one train step consumes one global batch of
``cfg.batch_size`` images: ``distribute_batches`` hands replica r the r-th slice of the very batch one
device would see, so losses, gradients and weights match one device up to float rounding.

Only the chief (``is_chief``) writes the run's files. Every worker still runs every step, every metric
read and every checkpoint save (they may contain collective ops that all workers must join): the
others save into a scratch folder that is deleted at once (``WorkerStore``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import tensorflow as tf

from cxr_keras.config import STRATEGIES  # the --strategy choices
from cxr_keras.gan import checkpoints


class StrategyError(ValueError):
    """The requested strategy cannot be set up here (explained in the message)."""


def split_cpu(devices: int) -> None:
    """Split the CPU into ``devices`` logical devices (before TensorFlow starts), for ``mirrored`` on a CPU."""
    if devices < 1:
        raise StrategyError(f"--cpu-devices: need at least 1 device, got {devices}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:  # TensorFlow already started in this process: fine if it is split the same way
        if len(tf.config.list_logical_devices("CPU")) != devices:
            raise StrategyError(f"--cpu-devices {devices}: TensorFlow already started in this process with "
                                f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s)") from None


def tf_config() -> Dict[str, Any]:
    """``TF_CONFIG`` checked: {"cluster": {"worker": [host:port, ...], ...}, "task": {"type", "index"}}."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise StrategyError("--strategy multi_worker: TF_CONFIG is not set (it names the cluster and this "
                            "process's task, see docs/scaling.md)")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StrategyError(f"TF_CONFIG: not a cluster and task description ({type(exc).__name__}: {exc}); "
                            'expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                            '"index": 0}}') from None
    if not 0 <= index < len(members):
        raise StrategyError(f"TF_CONFIG: task index {index} is outside the {len(members)} {task['type']} task(s)")
    return config


def make_strategy(name: str = "auto", cpu_devices: Optional[int] = None) -> tf.distribute.Strategy:
    """The ``--strategy`` of a run. Create it first thing in the process (multi_worker must precede any
    other TensorFlow work); ``cpu_devices`` splits the CPU into that many logical devices first."""
    if name not in STRATEGIES:
        raise StrategyError(f"--strategy: unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if cpu_devices:
        split_cpu(cpu_devices)
    if name == "multi_worker":
        tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(gpus or [d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def chief_task(task_type: Optional[str], task_id: int, cluster: Dict[str, Any]) -> bool:
    """TensorFlow's rule: the ``chief`` task, or worker 0 of a cluster without one (or no cluster at all)."""
    return not task_type or task_type == "chief" or (
        task_type == "worker" and int(task_id) == 0 and "chief" not in cluster)


def is_chief(strategy: Optional[tf.distribute.Strategy] = None) -> bool:
    """True in the one process that writes: not multi-worker, or TF_CONFIG's chief (else worker 0)."""
    resolver = getattr(strategy or tf.distribute.get_strategy(), "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def is_chief_process() -> bool:
    """``is_chief`` from TF_CONFIG alone, for a process that creates no strategy (e.g. a parent that
    starts the training child): True without TF_CONFIG."""
    if not os.environ.get("TF_CONFIG", "").strip():
        return True
    config = tf_config()
    return chief_task(config["task"]["type"], config["task"]["index"], config["cluster"])


def multi_worker(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is not None and bool(resolver.task_type)


def distribute_batches(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """``dataset``'s global batches fed to ``strategy``'s replicas: replica r of R gets rows
    [r·B/R, (r+1)·B/R) of each batch, on one machine or many (every worker reads the same stream)."""
    n = strategy.num_replicas_in_sync
    if n == 1:
        return strategy.experimental_distribute_dataset(dataset)
    batch = tf.nest.flatten(dataset.element_spec)[0].shape[0]
    if batch is None or batch % n:
        raise StrategyError(f"--batch-size {batch} is not divisible by the {n} replicas of the strategy")

    def replica_batches(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = n // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def slices(element):
            def part(t):
                shape = tf.concat([[n, batch // n], tf.shape(t)[1:]], axis=0)
                return tf.reshape(t, shape)[first:first + local]
            return tf.nest.map_structure(part, element)

        return dataset.map(slices).unbatch().prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(replica_batches)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Return once every worker got here (an all-reduce of one number)."""
    def ones():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.ones([])), axis=None)
    tf.function(ones)()


class WorkerStore(checkpoints.CheckpointStore):
    """The checkpoints of one worker of a multi-worker run, all in the chief's folder (shared storage).

    The chief repairs and restores first; the others wait, then restore the same newest good checkpoint
    read-only. Every worker saves (a save may contain collectives); the others' saves go to a scratch folder.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: os.PathLike, max_to_keep: int,
                 strategy: tf.distribute.Strategy):
        super().__init__(checkpoint, directory, max_to_keep)
        self.strategy, self.chief = strategy, is_chief(strategy)

    @property
    def latest_checkpoint(self) -> Optional[str]:
        if self.chief:
            return super().latest_checkpoint
        found = checkpoints.find(self.directory)
        return found[-1] if found else None

    def restore(self) -> Optional[str]:
        if self.chief:
            prefix = super().restore()
            barrier(self.strategy)
            return prefix
        barrier(self.strategy)  # the chief has repaired the folder
        prefix = checkpoints.newest_good(self.directory, log=lambda text: None)[0]
        if prefix is not None:
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
        return prefix

    def save(self, checkpoint_number: int) -> str:
        if self.chief:
            return super().save(checkpoint_number)
        scratch = Path(tempfile.mkdtemp(prefix="cxr_keras_worker_ckpt_"))
        try:
            return tf.train.CheckpointManager(self.checkpoint, str(scratch), max_to_keep=1).save(
                checkpoint_number=checkpoint_number)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def checkpoint_store(checkpoint: tf.train.Checkpoint, directory: os.PathLike, max_to_keep: int,
                     strategy: tf.distribute.Strategy) -> checkpoints.CheckpointStore:
    """The Trainer's checkpoint manager: ``WorkerStore`` in a multi-worker run, else ``CheckpointStore``."""
    if multi_worker(strategy):
        return WorkerStore(checkpoint, directory, max_to_keep, strategy)
    return checkpoints.CheckpointStore(checkpoint, directory, max_to_keep)


def summary_writer(logdir: os.PathLike, chief: bool):
    """TensorBoard's writer for the chief; a writer that writes nothing for the other workers."""
    return tf.summary.create_file_writer(str(logdir)) if chief else tf.summary.create_noop_writer()
