"""LightningModules: one per task, any registered model inside."""

from __future__ import annotations

from typing import Any

from nnzoo.data.weights import DataInfo
from nnzoo.errors import NnzooError
from nnzoo.tasks.base import WeightSpaceTask
from nnzoo.tasks.classification import ClassificationTask
from nnzoo.tasks.editing import EditingTask
from nnzoo.tasks.regression import RegressionTask

TASKS: dict[str, type[WeightSpaceTask]] = {"classification": ClassificationTask, "regression": RegressionTask,
                                           "editing": EditingTask}


def create_task(model: dict[str, Any], info: DataInfo, optim: dict[str, Any] | None = None,
                task: dict[str, Any] | None = None) -> WeightSpaceTask:
    """The LightningModule for ``info.task`` wrapping model ``model['name']``."""
    return task_class(info.task)(model=model, data_info=info.to_dict(), optim=optim, task=task)


def task_class(task: str) -> type[WeightSpaceTask]:
    if task not in TASKS:
        raise NnzooError(f"no task module for '{task}'")
    return TASKS[task]


__all__ = ["TASKS", "ClassificationTask", "EditingTask", "RegressionTask", "WeightSpaceTask", "create_task", "task_class"]
