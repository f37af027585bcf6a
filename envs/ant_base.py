"""Gymnasium's Ant-v5 body in a task arena: the base of the Ant task distributions (paper, section 6.3).

The ant is loaded from the installed gymnasium package (``ANT_XML``) and composed with a task's arena
through :class:`mujoco.MjSpec`; no XML is copied into this repository. Everything that depends on the
task (per-task model fields, controls of scripted bodies, rewards, episode ends) is written once, over a
batch of ``n`` simulations, so that the single env (``n = 1``) and its batched vector env
(``envs/mujoco_batch.py``) run the same code and give identical results.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces

from envs.base import IndexTasks, TaskEnv, TaskT

ANT_XML = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", "ant.xml")
ANT_NQ = 15  # free joint (xyz, quaternion) + 8 hinges
ANT_NV = 14
ANT_NU = 8
OBS_DIM = ANT_NQ + ANT_NV
FRAME_SKIP = 5  # Ant-v5: 5 substeps of 0.01 s, dt = 0.05 s
FLIP_HANDLING = ("rerandomize", "terminate")

# Per-task model fields: field name -> (indices into the field's first axis, values [n, len(indices), ...]).
ModelFields = dict[str, tuple[np.ndarray, np.ndarray]]
Params = dict[str, np.ndarray]  # per-simulation task parameters, each [n, ...]

WALL_RGBA = (0.45, 0.45, 0.5, 1.0)
GOAL_RGBA = (0.1, 0.8, 0.2, 0.6)


def add_box(spec: mujoco.MjSpec, name: str, center: Sequence[float], half_size: Sequence[float]) -> Any:
    """A static box in the world that collides with the ant (walls, blocks)."""
    return spec.worldbody.add_geom(
        name=name,
        type=mujoco.mjtGeom.mjGEOM_BOX,
        pos=[center[0], center[1], half_size[2]],
        size=list(half_size),
        rgba=list(WALL_RGBA),
        contype=1,
        conaffinity=1,
        condim=3,
    )


def add_outer_walls(spec: mujoco.MjSpec, low: Sequence[float], high: Sequence[float], height: float = 1.0) -> None:
    """Four walls of thickness 1 just outside the rectangle ``[low, high]``."""
    (x0, y0), (x1, y1) = low, high
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 + 1.0, (y1 - y0) / 2 + 1.0
    add_box(spec, "wall_top", (cx, y1 + 0.5), (hx, 0.5, height))
    add_box(spec, "wall_bottom", (cx, y0 - 0.5), (hx, 0.5, height))
    add_box(spec, "wall_left", (x0 - 0.5, cy), (0.5, hy, height))
    add_box(spec, "wall_right", (x1 + 0.5, cy), (0.5, hy, height))


def add_goal_marker(spec: mujoco.MjSpec, radius: float, pos: Sequence[float] = (0.0, 0.0)) -> None:
    """A flat disc (a site: it never collides) that shows the goal region when rendering."""
    spec.worldbody.add_site(
        name="goal",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        pos=[pos[0], pos[1], 0.02],
        size=[radius, 0.02, 0.0],
        rgba=list(GOAL_RGBA),
    )


def add_top_camera(spec: mujoco.MjSpec, center: Sequence[float], half_width: float) -> None:
    """A fixed camera looking straight down, x to the right and y up, that sees ``half_width`` around ``center``."""
    fovy = 45.0
    height = 1.05 * half_width / np.tan(np.radians(fovy / 2))
    spec.worldbody.add_camera(name="arena", pos=[center[0], center[1], height], quat=[1, 0, 0, 0], fovy=fovy)


class AntTaskEnv(TaskEnv[TaskT]):
    """Base of the Ant task envs: Ant-v5's body and actuators in an arena built by :meth:`build_arena`.

    Subclasses set ``start_xy`` and implement the batched task hooks :meth:`task_params`,
    :meth:`outcome` and, where needed, :meth:`physics_fields`, :meth:`visual_fields` and
    :meth:`extra_controls`. The observation is the ant's ``qpos`` (x and y included) and ``qvel``:
    ``Box(-inf, inf, (29,), float64)``, the same in every Ant task so that sub-policies transfer.
    Envs whose task parameters hold a ``"goal"`` expose it, never observed, as :attr:`goal_position`.

    It reproduces what it needs of Gymnasium's ``MujocoEnv`` and ``AntEnv`` (reset noise, frame skip,
    healthy range) rather than subclassing them: importing those needs ``imageio``, and ``AntEnv``
    pickles by its constructor arguments, which would lose a running episode.

    Args:
        xml_file: the ant's MJCF (Gymnasium's Ant-v5 ``ant.xml`` by default).
        flip_handling: ``"rerandomize"``: every ``pose_reset_every`` steps the ant is set upright where it
            stands, with fresh random joint angles and velocities (as the original MLSH code did, once per
            macro step), and the episode never terminates on a fall; ``"terminate"``: Ant-v5's rule, the
            episode terminates when the torso height leaves ``healthy_z_range``.
        pose_reset_every: steps between pose resets with ``"rerandomize"``.
        reset_noise_scale: Ant-v5's reset noise (uniform on positions, Gaussian on velocities).
        healthy_z_range: torso heights counted as healthy with ``"terminate"``.
        render_mode: None or ``"rgb_array"`` (the top-down ``"arena"`` camera).
        width: image width in pixels.
        height: image height in pixels.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    start_xy: tuple[float, float] = (0.0, 0.0)

    def __init__(
        self,
        xml_file: str = ANT_XML,
        flip_handling: str = "rerandomize",
        pose_reset_every: int = 200,
        reset_noise_scale: float = 0.1,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
    ) -> None:
        name = type(self).__name__
        if flip_handling not in FLIP_HANDLING:
            raise ValueError(f"{name} flip_handling must be 'rerandomize' or 'terminate', got {flip_handling!r}.")
        if int(pose_reset_every) != pose_reset_every or pose_reset_every < 1:
            raise ValueError(f"{name} pose_reset_every must be a positive int, got {pose_reset_every!r}.")
        self._set_render_mode(render_mode)
        self.flip_handling = flip_handling
        self.pose_reset_every = int(pose_reset_every)
        self.reset_noise_scale = float(reset_noise_scale)
        self.healthy_z_range = (float(healthy_z_range[0]), float(healthy_z_range[1]))
        self.xml_file = xml_file
        self.width, self.height = int(width), int(height)
        self.frame_skip = FRAME_SKIP
        self.model, self.data = self._initialize_simulation()
        self.init_qpos, self.init_qvel = self.data.qpos.copy(), self.data.qvel.copy()
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        self._renderer: mujoco.Renderer | None = None
        # Scripted bodies (AntObstacles' enemy) add actuators: the agent drives the ant's 8 only.
        self.action_space = spaces.Box(-1.0, 1.0, shape=(ANT_NU,), dtype=np.float32)
        self._steps = 0
        TaskEnv.__init__(self)
        self._params = self.task_params([self._task])

    # -- model -------------------------------------------------------------------------------------
    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        spec = mujoco.MjSpec.from_file(self.xml_file)
        spec.body("torso").pos = [self.start_xy[0], self.start_xy[1], 0.75]
        self.build_arena(spec)
        model = spec.compile()
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def build_arena(self, spec: mujoco.MjSpec) -> None:
        """Adds the task's arena (walls, markers, the ``"arena"`` camera, scripted bodies) to ``spec``."""
        raise NotImplementedError

    # -- batched task hooks (n simulations; the single env calls them with n = 1) ------------------
    def task_params(self, tasks: Sequence[Any]) -> Params:
        """Per-simulation parameters of ``tasks``, each array ``[n, ...]``."""
        raise NotImplementedError

    def physics_fields(self, params: Params) -> ModelFields:
        """Model fields that differ between tasks and change the dynamics (e.g. which blocks collide)."""
        return {}

    def visual_fields(self, params: Params) -> ModelFields:
        """Model fields that only change the picture (goal marker, hidden blocks)."""
        return {}

    def extra_controls(self, params: Params, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray | None:
        """Controls ``[n, nu - 8]`` of the scripted actuators, from the state before the step; None if none."""
        return None

    def outcome(
        self, params: Params, xy_before: np.ndarray, qpos: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Reward ``[n]``, task termination ``[n]`` (bool) and the info terms (each ``[n]``) of one step.

        Args:
            params: the simulations' task parameters.
            xy_before: torso (x, y) before the step, ``[n, 2]``.
            qpos: positions after the step, ``[n, nq]``.
            action: the ant's actions, ``[n, 8]`` (float64).
        """
        raise NotImplementedError

    # -- shared by the single and the vector env ---------------------------------------------------
    def initial_state(self, rng: np.random.Generator, params: Params) -> tuple[np.ndarray, np.ndarray]:
        """Ant-v5's reset noise on the ant's degrees of freedom; scripted bodies start where the model puts
        them unless a task (``params``, one row) places them."""
        qpos, qvel = self.init_qpos.copy(), self.init_qvel.copy()
        scale = self.reset_noise_scale
        qpos[:ANT_NQ] += rng.uniform(-scale, scale, size=ANT_NQ)
        qvel[:ANT_NV] += scale * rng.standard_normal(ANT_NV)
        return qpos, qvel

    def pose_reset(self, rng: np.random.Generator, params: Params, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Sets the ant upright where it stands with fresh random joints and velocities, in place."""
        fresh_qpos, fresh_qvel = self.initial_state(rng, params)
        xy = qpos[:2].copy()
        qpos[:ANT_NQ] = fresh_qpos[:ANT_NQ]
        qpos[:2] = xy
        qvel[:ANT_NV] = fresh_qvel[:ANT_NV]

    def terminations(self, params: Params, qpos: np.ndarray, task_terminated: np.ndarray) -> np.ndarray:
        """The task's termination, plus Ant-v5's unhealthy rule with ``flip_handling="terminate"``."""
        if self.flip_handling == "terminate":
            z = qpos[:, 2]
            low, high = self.healthy_z_range
            return task_terminated | ~((z >= low) & (z <= high))
        return task_terminated

    def pose_reset_due(self, steps: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """Which simulations get a pose reset after this step."""
        if self.flip_handling != "rerandomize":
            return np.zeros_like(terminated)
        return (steps % self.pose_reset_every == 0) & ~terminated

    def reset_info(self, qpos: np.ndarray, params: Params) -> dict[str, np.ndarray]:
        """Info at a reset: the step's info keys, with reward terms zero and flags (goal reached) false."""
        _, _, terms = self.outcome(params, qpos[:, :2], qpos, np.zeros((len(qpos), ANT_NU)))
        info = {
            key: np.zeros_like(value) if key.startswith("reward") or value.dtype == bool else value
            for key, value in terms.items()
        }
        info["x_position"], info["y_position"] = qpos[:, 0].copy(), qpos[:, 1].copy()
        return info

    @staticmethod
    def observations(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """``[n, 29]``: the ant's positions (x, y included) and velocities."""
        return np.concatenate([qpos[:, :ANT_NQ], qvel[:, :ANT_NV]], axis=1)

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._apply_reset_options(options)
        self._params = self.task_params([self._task])
        for fields in (self.physics_fields(self._params), self.visual_fields(self._params)):
            for field, (index, values) in fields.items():
                getattr(self.model, field)[index] = values[0]
        mujoco.mj_resetData(self.model, self.data)
        qpos, qvel = self.initial_state(self.np_random, self._params)
        self.set_state(qpos, qvel)
        self._steps = 0
        info = self.reset_info(self.data.qpos[None], self._params)
        return self._obs(), {key: _scalar(value[0]) for key, value in info.items()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ANT_NU,):
            raise ValueError(f"{type(self).__name__} action must have shape (8,), got {action.shape}.")
        data = self.data
        xy_before = data.qpos[None, :2].copy()
        data.ctrl[:ANT_NU] = action
        extra = self.extra_controls(self._params, data.qpos[None], data.qvel[None])
        if extra is not None:
            data.ctrl[ANT_NU:] = extra[0]
        mujoco.mj_step(self.model, data, nstep=self.frame_skip)
        self._steps += 1
        qpos = data.qpos[None]
        reward, task_terminated, terms = self.outcome(self._params, xy_before, qpos, action[None])
        terminated = self.terminations(self._params, qpos, task_terminated)
        if self.pose_reset_due(np.array([self._steps]), terminated)[0]:
            fresh_qpos, fresh_qvel = data.qpos.copy(), data.qvel.copy()
            self.pose_reset(self.np_random, self._params, fresh_qpos, fresh_qvel)
            self.set_state(fresh_qpos, fresh_qvel)
        info = {key: _scalar(value[0]) for key, value in terms.items()}
        info["x_position"], info["y_position"] = float(qpos[0, 0]), float(qpos[0, 1])
        return self._obs(), float(reward[0]), bool(terminated[0]), False, info

    def _obs(self) -> np.ndarray:
        return self.observations(self.data.qpos[None], self.data.qvel[None])[0]

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gymnasium.logger.warn(
                f"{type(self).__name__}.render() called without a render_mode; make the env with "
                f"render_mode='rgb_array'."
            )
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=self.height, width=self.width)
        self._renderer.update_scene(self.data, camera="arena")
        return self._renderer.render()

    @property
    def agent_position(self) -> np.ndarray:
        """The torso's (x, y), ``[2]`` float (the free joint's first coordinates)."""
        return np.asarray(self.data.qpos[:2], dtype=float).copy()

    @property
    def goal_position(self) -> np.ndarray:
        """The current task's goal (x, y), ``[2]`` float; ``AttributeError`` (so ``hasattr`` is false) without one.

        Computed from :attr:`task` rather than read from the episode's parameters, so that it is right before
        the first reset and right after a task change (which takes effect at the next reset).
        """
        params = self.task_params([self._task])
        if "goal" not in params:
            raise AttributeError(f"{type(self).__name__} has no goal_position: its tasks have no goal.")
        return np.asarray(params["goal"][0], dtype=np.float64).copy()

    @property
    def dt(self) -> float:
        """Seconds of simulated time per step."""
        return float(self.model.opt.timestep) * self.frame_skip

    def planar_velocity(self, xy_before: np.ndarray, qpos: np.ndarray) -> np.ndarray:
        """The torsos' (x, y) velocity over the last step, ``[n, 2]``, from ``xy_before`` to ``qpos[:, :2]``."""
        return (qpos[:, :2] - xy_before) / self.dt

    def control_cost(self, action: np.ndarray) -> np.ndarray:
        """``-ctrl_cost_weight |a|^2`` over the ant's own actuators, ``[n]`` (negative): the dense rewards' cost term.

        Subclasses that use it set ``self.ctrl_cost_weight``.
        """
        return -self.ctrl_cost_weight * np.square(action[:, :ANT_NU]).sum(axis=1)

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Sets positions and velocities and recomputes the derived quantities (``mj_forward``)."""
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)

    def open_floor(self) -> AntOpenFloor:
        """The same ant, observation and pose handling on an open floor, started where this env starts the ant.

        Nothing is in its way (no walls, blocks or scripted bodies), so how far and where a sub-policy walks
        alone there is its gait, not the arena's: ``mlsh.inspect`` measures the Ant sub-policies' speed on it.
        """
        return AntOpenFloor(
            start_xy=self.start_xy,
            xml_file=self.xml_file,
            flip_handling=self.flip_handling,
            pose_reset_every=self.pose_reset_every,
            reset_noise_scale=self.reset_noise_scale,
            healthy_z_range=self.healthy_z_range,
        )

    def place_ant(self, xy: Sequence[float]) -> None:
        """Moves the torso to ``xy`` and stops every body (scripted tests and demos; not for agents)."""
        qpos = self.data.qpos.copy()
        qpos[:2] = xy
        self.set_state(qpos, np.zeros_like(self.data.qvel))

    # The renderer holds a GL context: it is not pickled, and a new one is made on the next render().
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_renderer": None}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _scalar(value: Any) -> Any:
    """A NumPy scalar as the matching Python scalar (info values of the single env)."""
    value = np.asarray(value)
    return bool(value) if value.dtype == bool else float(value)


class AntOpenFloor(IndexTasks, AntTaskEnv[int]):
    """The ant alone on an open floor: one task, reward 0, no termination (see :meth:`AntTaskEnv.open_floor`).

    Not registered: it is a measuring ground, made by :meth:`AntTaskEnv.open_floor`, with no episode limit of its
    own (whoever steps it decides how long).

    Args:
        start_xy: where the torso starts.
        **kwargs: those of :class:`AntTaskEnv`.
    """

    num_index_tasks = 1
    task_meaning = "the open floor has one task, 0"

    def __init__(self, start_xy: Sequence[float] = (0.0, 0.0), **kwargs: Any) -> None:
        self.start_xy = (float(start_xy[0]), float(start_xy[1]))
        super().__init__(**kwargs)

    def build_arena(self, spec: mujoco.MjSpec) -> None:
        add_top_camera(spec, self.start_xy, 20.0)

    def task_params(self, tasks: Sequence[Any]) -> Params:
        return {"task": np.asarray(tasks, dtype=np.int64)}

    def outcome(
        self, params: Params, xy_before: np.ndarray, qpos: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        n = len(qpos)
        return np.zeros(n), np.zeros(n, dtype=bool), {}
