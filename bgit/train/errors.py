"""Errors of the trainer; every one is a one-line :class:`BgitError`."""

from bgit.errors import BgitError


class TrainError(BgitError):
    """Base of every training failure the user can act on."""


class EmptyTrainingSetError(TrainError):
    def __init__(self):
        super().__init__("no training examples: the rollout produced no trajectories to bake")


class InvalidExampleError(TrainError):
    def __init__(self, index: int, reason: str):
        self.index, self.reason = index, reason
        super().__init__(f"training example {index}: {reason}")


class CheckpointMismatchError(TrainError):
    def __init__(self, path, reason: str = "was made with other training data or settings; remove it to start over"):
        self.path, self.reason = path, reason
        super().__init__(f"checkpoint {path} {reason}")


class AdapterConcatError(TrainError):
    def __init__(self, path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"cannot concatenate adapter {path}: {reason}")


class DeepSpeedUnavailableError(TrainError):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"DeepSpeed training is unavailable: {reason}")


class LostRankError(TrainError):
    """Another training process stopped (killed, crashed) while this one waited for it."""

    def __init__(self, rank: int, world: int, detail: str):
        self.rank, self.world, self.detail = rank, world, detail
        super().__init__(f"rank {rank} of {world}: lost contact with the other training processes: {detail}")
