"""The task contract shared by every task-distribution environment.

A task-distribution env is an ordinary :class:`gymnasium.Env` with three additions:

* ``sample_task(rng)`` draws a task from the distribution with a caller-owned
  :class:`numpy.random.Generator` (never the global NumPy RNG);
* ``task`` is the current task; it persists across ``reset()`` and is only changed by
  assigning it (``env.task = t`` or ``env.set_task(t)``) or by ``reset(options={"task": t})``;
* optionally ``oracle_action()`` returns the action of a scripted policy that achieves the best
  return for the current task, used by evaluation to report a ratio to the best achievable;
* optionally ``agent_position`` (and ``position_is_cell``) and ``goal_position`` tell diagnostics
  (``mlsh.inspect``) where the agent and its goal are, so that they need not know the env's class;
* optionally ``train_tasks`` lists the finite family that ``sample_task`` draws uniformly from, for
  balanced task sampling (``mlsh.task_sampling=balanced``); ``None`` where the family is not finite.

In a Gymnasium vector env the task of each sub-env is set with
``vec_env.set_attr("task", [t0, t1, ...])``, which reaches the unwrapped env through wrappers.

An env that names the attributes holding an episode in progress in ``state_attributes`` can be saved
and restored as plain data with ``state_dict()`` / ``load_state_dict()``: a training checkpoint then
resumes its copies exactly without pickling them.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numpy as np

TaskT = TypeVar("TaskT")


def check_nonnegative_number(value: Any, name: str, example: float) -> float:
    """``value`` as a float when it is a finite number >= 0 (bools refused), else ``ValueError`` naming ``name``
    (``"<Env> <argument>"``) and an ``example``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and 0.0 <= value < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}; e.g. {example}.")
    return float(value)


def validate_index_task(task: Any, num_choices: int, meaning: str, env_name: str) -> int:
    """``task`` as an int in ``[0, num_choices)`` (bools refused), or ``ValueError`` naming what is accepted."""
    choices = " or ".join(str(i) for i in range(num_choices)) if num_choices <= 3 else f"an int in [0, {num_choices})"
    message = f"{env_name} task must be {choices} ({meaning}), got {task!r}."
    try:
        valid = not isinstance(task, (bool, np.bool_)) and int(task) == task and 0 <= int(task) < num_choices
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not valid:
        raise ValueError(message)
    return int(task)


class IndexTasks:
    """The task contract of an env whose tasks are the indices ``0 .. num_index_tasks - 1``, each drawn with the
    same probability: :meth:`sample_task`, :attr:`train_tasks` and :meth:`validate_task`. Mix it in before the
    env's :class:`TaskEnv` base (``class MyEnv(IndexTasks, TaskEnv[int])``).
    """

    num_index_tasks: ClassVar[int]
    task_meaning: ClassVar[str]  # what the index picks, for the message of a refused task

    def sample_task(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.num_index_tasks))

    @property
    def train_tasks(self) -> list[int]:
        return list(range(self.num_index_tasks))

    def validate_task(self, task: Any) -> int:
        return validate_index_task(task, self.num_index_tasks, self.task_meaning, type(self).__name__)


class TaskEnv(gym.Env, Generic[TaskT]):
    """Base class for task-distribution envs (see the module docstring for the contract).

    Subclasses implement :meth:`sample_task`, :meth:`validate_task` and, where they can,
    :meth:`oracle_action`. The task starts as ``sample_task`` with a generator seeded 0 so that a
    freshly made env is usable (``check_env`` resets it without setting a task).
    """

    def __init__(self) -> None:
        self._task: TaskT = self.sample_task(np.random.default_rng(0))

    # -- task contract -------------------------------------------------------------------------
    def sample_task(self, rng: np.random.Generator) -> TaskT:
        """Draws a task from the distribution using ``rng`` only."""
        raise NotImplementedError

    def sample_test_task(self, rng: np.random.Generator) -> TaskT:
        """Draws a task for evaluation on unseen tasks; envs with a held-out split override this."""
        return self.sample_task(rng)

    def validate_task(self, task: Any) -> TaskT:
        """Returns ``task`` in canonical form, or raises ``ValueError`` naming what is accepted."""
        return task

    @property
    def train_tasks(self) -> list[TaskT] | None:
        """Every task ``sample_task`` draws, each with the same probability; None if not a finite family."""
        return None

    @property
    def task(self) -> TaskT:
        """The current task; unchanged by ``reset()`` unless ``options={"task": ...}`` is given."""
        return self._task

    @task.setter
    def task(self, value: Any) -> None:
        self._task = self.validate_task(value)

    def set_task(self, task: Any) -> None:
        """Sets the task used from the next ``reset()`` on."""
        self.task = task

    def oracle_action(self) -> Any:
        """Action of a scripted policy with the best achievable return for the current task."""
        raise NotImplementedError(f"{type(self).__name__} has no oracle policy.")

    # -- diagnostics ---------------------------------------------------------------------------
    # Whether agent_position is a grid cell (row, col) rather than a point in the plane.
    position_is_cell: bool = False

    @property
    def agent_position(self) -> np.ndarray | None:
        """Where the agent is, ``[2]`` float (or a grid cell, see ``position_is_cell``); None without a position.

        Envs with a goal in the plane also expose it as ``goal_position`` (absent where there is none).
        """
        return None

    # -- saving an episode in progress -----------------------------------------------------------
    # The attributes, besides the task and ``np_random``, that change while the env runs (its settings do
    # not); None: not declared, and the env cannot be saved as plain data.
    state_attributes: ClassVar[tuple[str, ...] | None] = None

    def state_dict(self) -> dict[str, Any] | None:
        """The env between two steps as plain data (numbers, strings, NumPy arrays, containers): the task,
        the state of ``np_random`` and the ``state_attributes``; None where the env does not declare them."""
        if self.state_attributes is None:
            return None
        return {
            "task": copy.deepcopy(self._task),
            "np_random": None if self._np_random is None else self._np_random.bit_generator.state,
            "np_random_seed": self._np_random_seed,
            "attributes": {name: copy.deepcopy(getattr(self, name)) for name in self.state_attributes},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Puts back a :meth:`state_dict`: the next step continues the saved episode exactly."""
        self._task = self.validate_task(state["task"])
        if state["np_random"] is not None:
            bit_generator = getattr(np.random, state["np_random"]["bit_generator"])()
            bit_generator.state = state["np_random"]
            self._np_random = np.random.Generator(bit_generator)
        self._np_random_seed = state["np_random_seed"]
        for name, value in state["attributes"].items():
            setattr(self, name, copy.deepcopy(value))

    def _set_render_mode(self, render_mode: str | None) -> None:
        """Stores ``render_mode`` after checking it against ``metadata["render_modes"]``."""
        modes = self.metadata.get("render_modes", [])
        if render_mode is not None and render_mode not in modes:
            allowed = " or ".join(["None", *(repr(m) for m in modes)])
            raise ValueError(f"{type(self).__name__} render_mode must be {allowed}, got {render_mode!r}.")
        self.render_mode = render_mode

    def _apply_reset_options(self, options: dict[str, Any] | None) -> None:
        """Applies ``options["task"]`` if present; call first thing in ``reset``."""
        if options and "task" in options:
            self.task = options["task"]
