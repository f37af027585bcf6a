"""A Gymnasium vector env that steps every Ant task simulation at once on ``mujoco.batch``.

One :class:`mujoco.batch.Batch` holds a simulation per sub-env and steps them all on a thread pool;
tasks, rewards, pose resets and episode ends are computed with the single env's own batched hooks
(``envs/ant_base.py``) over all sub-envs at once. For the same seeds, tasks and actions, it returns
exactly what a :class:`gymnasium.vector.SyncVectorEnv` over the single env returns (tested).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import mujoco
import mujoco.batch
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.ant_base import ANT_NU, AntTaskEnv, Params


class AntBatchVectorEnv(VectorEnv):
    """``num_envs`` copies of an :class:`AntTaskEnv` in one ``mujoco.batch.Batch``, SAME_STEP autoreset.

    Subclasses set ``env_class``. Sub-env ``i`` reset with an int ``seed`` is seeded ``seed + i``, as in
    Gymnasium's vector envs. Each sub-env has its own task (``set_attr("task", [...])``), which takes
    effect at its next reset, as in the single env.

    Args:
        num_envs: number of sub-envs.
        max_episode_steps: truncation length T (the registered ``max_episode_steps`` by default).
        nthread: threads stepping the batch; None uses every core this process may run on.
        render_mode: None or ``"rgb_array"`` (``render()`` returns one frame per sub-env).
        **env_kwargs: the single env's arguments.
    """

    env_class: type[AntTaskEnv] = AntTaskEnv

    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int | None = None,
        nthread: int | None = None,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ) -> None:
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}.")
        self.num_envs = int(num_envs)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.env = self.env_class(render_mode=render_mode, **env_kwargs)  # model, spaces and task hooks
        self.render_mode = render_mode
        self.metadata = {**self.env.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}
        self.single_observation_space = self.env.observation_space
        self.single_action_space = self.env.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.nthread = _process_cores() if nthread is None else int(nthread)
        self.batch = mujoco.batch.Batch(self.env.model, self.num_envs, nthread=self.nthread)
        self._qpos, self._qvel, self._ctrl = self.batch.bind("qpos"), self.batch.bind("qvel"), self.batch.bind("ctrl")
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._tasks: list[Any] = [self.env.task] * self.num_envs  # set by set_attr, used from the next reset
        self._applied: list[Any] = list(self._tasks)  # the tasks of the running episodes
        self._params: Params = self.env.task_params(self._applied)
        self._write_fields(np.arange(self.num_envs))
        self._steps = np.zeros(self.num_envs, dtype=np.int64)

    # -- tasks -------------------------------------------------------------------------------------
    def get_attr(self, name: str) -> tuple[Any, ...]:
        """``"task"`` gives each sub-env's task; other names give the single env's attribute, once per sub-env."""
        if name == "task":
            return tuple(self._tasks)
        return tuple(getattr(self.env, name) for _ in range(self.num_envs))

    def set_attr(self, name: str, values: Any) -> None:
        """Only ``"task"`` can be set: one task for all sub-envs, or a list with one per sub-env."""
        if name != "task":
            raise AttributeError(f"{type(self).__name__} can only set 'task', not {name!r}.")
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr('task', ...) needs {self.num_envs} tasks, got {len(values)}.")
        self._tasks = [self.env.validate_task(task) for task in values]

    def _write_fields(self, ids: np.ndarray) -> None:
        """Writes the per-task physics fields of simulations ``ids`` into the batch's model copies."""
        rows = {key: value[ids] for key, value in self._params.items()}
        for field, (index, values) in self.env.physics_fields(rows).items():
            self.batch.expand(field)[np.ix_(ids, index)] = values

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        elif not isinstance(mask, np.ndarray) or mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
            raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},).")
        if isinstance(seed, int):
            seeds: Sequence[int | None] = [seed + i for i in range(self.num_envs)]
        elif seed is None:
            seeds = [None] * self.num_envs
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} envs.")
        if "task" in options:
            task = self.env.validate_task(options["task"])
            self._tasks = [task if m else t for m, t in zip(mask, self._tasks)]
        ids = np.flatnonzero(mask)
        for i in ids:
            if seeds[i] is not None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
        info = self._reset_ids(ids)
        return self._observe(), _masked_info(info, ids, self.num_envs)

    def _reset_ids(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Starts new episodes in simulations ``ids``; returns their reset info (rows of ``ids``)."""
        if not len(ids):
            return {}
        for i in ids:
            self._applied[i] = self._tasks[i]
            if self._rngs[i] is None:
                self._rngs[i] = seeding.np_random()[0]
        rows = self.env.task_params([self._applied[i] for i in ids])
        for key, value in rows.items():
            self._params[key][ids] = value
        self._write_fields(ids)
        self.batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        for i in ids:
            self._qpos[i], self._qvel[i] = self.env.initial_state(self._rngs[i], self._row(i))
        self.batch.forward(ids)
        self._steps[ids] = 0
        return self.env.reset_info(self._qpos[ids], rows)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        action = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, ANT_NU)
        env, params = self.env, self._params
        xy_before = self._qpos[:, :2].copy()
        self._ctrl[:, :ANT_NU] = action
        extra = env.extra_controls(params, self._qpos, self._qvel)
        if extra is not None:
            self._ctrl[:, ANT_NU:] = extra
        self.batch.step(nstep=env.frame_skip)
        self._steps += 1
        qpos = self._qpos
        reward, task_terminated, terms = env.outcome(params, xy_before, qpos, action)
        terminated = env.terminations(params, qpos, task_terminated)
        posed = np.flatnonzero(env.pose_reset_due(self._steps, terminated))
        if len(posed):
            for i in posed:
                env.pose_reset(self._rngs[i], self._row(i), self._qpos[i], self._qvel[i])
            self.batch.forward(posed)
        info: dict[str, Any] = {**terms, "x_position": qpos[:, 0].copy(), "y_position": qpos[:, 1].copy()}
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=bool)
        else:
            truncated = self._steps >= self.max_episode_steps
        obs = self._observe()
        done = np.flatnonzero(terminated | truncated)
        info = _masked_info(info, np.arange(self.num_envs), self.num_envs)
        if len(done):
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in done:
                final_obs[i] = obs[i]
            final_info = {key: value for key, value in info.items() if not key.startswith("_")}
            info["final_info"] = _masked_info(final_info, done, self.num_envs, select=True)
            info["_final_info"] = info["final_info"]["_x_position"].copy()
            info["final_obs"], info["_final_obs"] = final_obs, info["_final_info"].copy()
            for key, value in self._reset_ids(done).items():
                info[key][done] = value
            obs = self._observe()
        return obs, reward.astype(np.float64), terminated, truncated, info

    def _row(self, i: int) -> Params:
        """Sub-env ``i``'s task parameters, as a batch of one."""
        return {key: value[i : i + 1] for key, value in self._params.items()}

    def _observe(self) -> np.ndarray:
        return self.env.observations(self._qpos, self._qvel)

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One frame per sub-env, each drawn by the single env's renderer from that simulation's state."""
        if self.render_mode is None:
            return None
        env, frames = self.env, []
        for i in range(self.num_envs):
            self.batch.get_model(i, env.model)
            self.batch.get_data(i, env.data)
            for field, (index, values) in env.visual_fields(self._row(i)).items():
                getattr(env.model, field)[index] = values[0]
            mujoco.mj_forward(env.model, env.data)
            frames.append(env.render())
        return tuple(frames)

    # -- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue every sub-env exactly: simulation states, RNGs, tasks, step counts."""
        return {
            "sim_state": self.batch.state.copy(),
            "rngs": [None if rng is None else rng.bit_generator.state for rng in self._rngs],
            "tasks": list(self._tasks),
            "applied": list(self._applied),
            "steps": self._steps.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["sim_state"].shape != self.batch.state.shape:
            raise ValueError(
                f"Saved env state has shape {state['sim_state'].shape}, this vector env needs "
                f"{self.batch.state.shape}: num_envs or the env's model changed."
            )
        self.batch.state[...] = state["sim_state"]
        self._rngs = []
        for rng_state in state["rngs"]:
            rng = None
            if rng_state is not None:
                rng = seeding.np_random(0)[0]
                rng.bit_generator.state = rng_state
            self._rngs.append(rng)
        self._tasks, self._applied = list(state["tasks"]), list(state["applied"])
        self._params = self.env.task_params(self._applied)
        self._write_fields(np.arange(self.num_envs))
        self._steps = state["steps"].copy()

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()


def _masked_info(info: dict[str, np.ndarray], ids: np.ndarray, num_envs: int, select: bool = False) -> dict[str, Any]:
    """Gymnasium's vector info layout: ``key -> [num_envs]`` values and ``_key -> [num_envs]`` bool masks.

    ``info`` holds rows of ``ids`` only, or (``select``) rows of every env, of which ``ids`` are kept.
    """
    out: dict[str, Any] = {}
    mask = np.zeros(num_envs, dtype=bool)
    mask[ids] = True
    for key, value in info.items():
        value = np.asarray(value)
        full = np.zeros((num_envs, *value.shape[1:]), dtype=value.dtype)
        full[ids] = value[ids] if select else value
        out[key], out[f"_{key}"] = full, mask.copy()
    return out


def _process_cores() -> int:
    """The batch's default thread count: the cores of this process's affinity mask."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
