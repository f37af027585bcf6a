"""Ant mazes: a walled arena with a 3x3 grid of blocks whose layout is the task (MLSH paper, section 6.3).

Grid cells are ``(row, col)``: row 0 is the top (y = 16), col 0 the left (x = 8); cell centres are
``x = 8 + 16 col``, ``y = 16 - 16 row`` in a 48 x 48 arena (x in [0, 48], y in [-24, 24]). The ant
starts in the middle-left cell (1, 0), which is always open. A layout opens a self-avoiding walk of
cells from the start cell (every other cell holds a block) and puts the goal on the middle of a face
of the walk's last cell that is a wall or a block, not the face it was entered by.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import mujoco
import numpy as np

from envs.ant_base import (
    WALL_RGBA,
    AntTaskEnv,
    ModelFields,
    Params,
    add_box,
    add_goal_marker,
    add_outer_walls,
    add_top_camera,
)
from envs.base import check_nonnegative_number, validate_index_task
from envs.mujoco_batch import AntBatchVectorEnv

Cell = tuple[int, int]

GRID = 3
CELL_SIZE = 16.0
ARENA_LOW, ARENA_HIGH = (0.0, -24.0), (48.0, 24.0)
START_CELL: Cell = (1, 0)
START_XY = (2.0, 0.0)
# Directions in enumeration order, as (d_row, d_col): up, right, down, left.
DIRECTIONS: tuple[Cell, ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
BLOCK_CELLS: tuple[Cell, ...] = tuple((r, c) for r in range(GRID) for c in range(GRID) if (r, c) != START_CELL)


class MazeLayout(NamedTuple):
    """Open cells (a walk from the start cell) and the goal point on a face of the last one."""

    open_cells: tuple[Cell, ...]
    goal: tuple[float, float]


def cell_center(cell: Cell) -> tuple[float, float]:
    """(x, y) of a cell's centre."""
    return 8.0 + CELL_SIZE * cell[1], 16.0 - CELL_SIZE * cell[0]


def _face_goal(cell: Cell, direction: Cell) -> tuple[float, float]:
    x, y = cell_center(cell)
    return x + CELL_SIZE / 2 * direction[1], y - CELL_SIZE / 2 * direction[0]


def _walk(*moves: str) -> tuple[Cell, ...]:
    step = {"up": (-1, 0), "right": (0, 1), "down": (1, 0), "left": (0, -1)}
    cells = [START_CELL]
    for move in moves:
        dr, dc = step[move]
        cells.append((cells[-1][0] + dr, cells[-1][1] + dc))
    return tuple(cells)


# The paper's 9 layouts (PAPER.md), the default training distribution; goal points as listed there.
PAPER_LAYOUTS: tuple[MazeLayout, ...] = (
    MazeLayout(_walk("up"), (8.0, 24.0)),
    MazeLayout(_walk("down"), (8.0, -24.0)),
    MazeLayout(_walk("right", "up"), (24.0, 24.0)),
    MazeLayout(_walk("right", "down"), (24.0, -24.0)),
    MazeLayout(_walk("right", "right"), (48.0, 0.0)),
    MazeLayout(_walk("right", "right", "up"), (40.0, 24.0)),
    MazeLayout(_walk("right", "right", "down"), (40.0, -24.0)),
    MazeLayout(_walk("up", "right"), (32.0, 16.0)),
    MazeLayout(_walk("down", "right"), (32.0, -16.0)),
)


def enumerate_layouts() -> tuple[MazeLayout, ...]:
    """Every layout of the family, deterministically: walks in depth-first order (moves up, right, down,
    left), then each goal face of the last cell in the same order; duplicates (same open cells and goal)
    are dropped."""
    found: dict[tuple[frozenset[Cell], tuple[float, float]], MazeLayout] = {}

    def extend(walk: list[Cell]) -> None:
        last = walk[-1]
        if len(walk) > 1:
            for direction in DIRECTIONS:
                neighbour = (last[0] + direction[0], last[1] + direction[1])
                if neighbour in walk:  # the face it was entered by, or one shared with another open cell
                    continue
                layout = MazeLayout(tuple(walk), _face_goal(last, direction))
                found.setdefault((frozenset(walk), layout.goal), layout)
        for dr, dc in DIRECTIONS:
            nxt = (last[0] + dr, last[1] + dc)
            if 0 <= nxt[0] < GRID and 0 <= nxt[1] < GRID and nxt not in walk:
                extend([*walk, nxt])

    extend([START_CELL])
    return tuple(found.values())


def _key(layout: MazeLayout) -> tuple[frozenset[Cell], tuple[float, float]]:
    return frozenset(layout.open_cells), layout.goal


def _moves_left(cells: Sequence[Cell]) -> bool:
    """Whether a walk of cells has a move left (to a lower column)."""
    return any(b[1] < a[1] for a, b in zip(cells, cells[1:]))


def of_training_kind(layout: MazeLayout) -> bool:
    """Whether a layout is of the paper's kind (all 9 training layouts are): a walk of at most 3 moves, none
    of them left, each toward the goal along its axis (the x or y of the goal lies beyond the cell the move
    leaves, in the move's direction). The paper's dense reward pays for every such move; a walk that must
    first move away from the goal, or left, is one that no training layout teaches."""
    cells = layout.open_cells
    if len(cells) > 4 or _moves_left(cells):
        return False
    for a, b in zip(cells, cells[1:]):
        (ax, ay), (bx, by) = cell_center(a), cell_center(b)
        if (bx - ax) * (layout.goal[0] - ax) + (by - ay) * (layout.goal[1] - ay) <= 0:
            return False
    return True


_FAMILY = enumerate_layouts()
_PAPER_KEYS = [_key(layout) for layout in PAPER_LAYOUTS]
assert all(key in {_key(layout) for layout in _FAMILY} for key in _PAPER_KEYS), "paper layouts are in the family"
# Task i is LAYOUTS[i]: the paper's 9 first (training), then every other layout of the family (held out).
LAYOUTS: tuple[MazeLayout, ...] = PAPER_LAYOUTS + tuple(lay for lay in _FAMILY if _key(lay) not in _PAPER_KEYS)
NUM_TRAIN_LAYOUTS = len(PAPER_LAYOUTS)


def goal_face(layout: MazeLayout) -> str:
    """Which face of its last cell a layout's goal lies on: ``"left"`` (its x below the cell's centre: only a walk
    left reaches it, which no training layout asks for), ``"right"`` or ``"top_bottom"``."""
    centre_x, goal_x = cell_center(layout.open_cells[-1])[0], layout.goal[0]
    return "left" if goal_x < centre_x else "right" if goal_x > centre_x else "top_bottom"


def layout_kind(layout: MazeLayout) -> str:
    """What kind of maze a layout is, beside the training layouts: ``"training_kind"`` (:func:`of_training_kind`),
    else ``"left"`` (a move left), ``"long"`` (4 or more moves, none left) or ``"away"`` (at most 3 moves, none
    left, one away from the goal along its axis)."""
    if of_training_kind(layout):
        return "training_kind"
    if _moves_left(layout.open_cells):
        return "left"
    return "long" if len(layout.open_cells) > 4 else "away"


def held_out_kinds() -> dict[str, int]:
    """How many held-out layouts (every one after the paper's 9) are of each :func:`layout_kind`."""
    counts = dict.fromkeys(("training_kind", "left", "long", "away"), 0)
    for layout in LAYOUTS[NUM_TRAIN_LAYOUTS:]:
        counts[layout_kind(layout)] += 1
    return counts


# The held-out layouts of the training kind (of_training_kind), the test_layouts="training_kind" draws.
TRAINING_KIND_LAYOUTS: tuple[int, ...] = tuple(
    i for i in range(NUM_TRAIN_LAYOUTS, len(LAYOUTS)) if of_training_kind(LAYOUTS[i])
)


class AntMaze(AntTaskEnv[int]):
    """Gymnasium's Ant-v5 in a maze of blocks on a 3x3 grid; the layout (and with it the goal) is the task.

    ## Description
    A 48 x 48 walled arena holds a 3x3 grid of cells of size 16. The ant starts at (2, 0) in the
    middle-left cell. Each task is a layout (``envs.ant_maze.LAYOUTS[task]``): a walk of open cells from
    the start cell, every other cell filled by a block (``block_size`` wide, 15.2 as in the paper, so the
    ant cannot pass between blocks), and a goal point on a wall or block face at the end of the walk. The
    layout and the goal are never observed and persist across resets. This is the maze distribution of
    Frans et al. (2018), section 6.3 (the original code hard-coded one layout).

    Tasks 0-8 are the paper's 9 layouts (up, down, right-up, right-down, straight right, right-right-up,
    right-right-down, up-then-right, down-then-right), drawn by :meth:`sample_task` for training. Tasks
    9 and above are the rest of a deterministically enumerated family (every walk from the start cell,
    every wall or block face of its last cell other than the one it was entered by; see
    :func:`enumerate_layouts`), drawn by :meth:`sample_test_task` as held-out mazes. Most of them are of
    another kind than the training layouts: longer walks, walks that need walking left, or that first lead
    away from the goal, where the dense reward pays for the wrong way. ``test_layouts="training_kind"``
    draws only the 33 of the training kind (:func:`of_training_kind`: at most 3 moves, none left, each
    toward the goal).

    ## Action Space
    ``Box(-1, 1, (8,), float32)``: torques of Ant-v5's eight hip and ankle motors (gear 150).

    ## Observation Space
    ``Box(-inf, inf, (29,), float64)``: the ant's ``qpos`` (x and y included) and ``qvel``, as in every
    Ant task here; no layout or goal information.

    ## Rewards
    ``reward_type="dense"`` (the paper's): the torso's velocity toward the goal along each axis,
    ``sum_i v_i sign(goal_i - xy_i)`` (``info["reward_velocity"]``), minus ``0.1 |a|^2``
    (``info["reward_ctrl"]``, negative), plus ``goal_bonus`` (default 0, the paper's) on the step that
    enters the goal region. ``reward_type="sparse"``: 1 on the step that enters the goal
    region (torso within ``goal_radius`` of the goal point), else 0 (``info["reward_goal"]``).
    ``info["distance_to_goal"]`` and ``info["goal_reached"]`` are reported in both modes.

    ## Starting State
    Ant-v5's, with the torso at (2, 0, 0.75).

    ## Episode End
    Terminates when the torso enters the goal region. Flips: with the default
    ``flip_handling="rerandomize"`` the ant is set upright where it stands, with fresh random joints,
    every ``pose_reset_every`` (200) steps, as the original code did (once per macro step), and never
    terminates on a fall; ``flip_handling="terminate"`` ends the episode when the torso height leaves
    ``healthy_z_range`` as Ant-v5 does (with the dense reward, whose control cost is negative, that
    rewards falling over early). Truncation after ``max_episode_steps`` (T = 1000, 50 s).

    ## Arguments
    ``reward_type`` ("dense" or "sparse"), ``goal_radius`` (2.0), ``goal_bonus`` (0.0), ``block_size`` (15.2),
    ``ctrl_cost_weight`` (0.1), ``train_layouts`` (indices of the layouts :meth:`sample_task` draws from;
    None, the default, is the paper's 9; e.g. ``[4]``, straight right only, trains one direction),
    ``test_layouts`` (None, every held-out layout, or ``"training_kind"``; either leaves out the training
    layouts, so a layout named in ``train_layouts`` is never drawn as a held-out one), and
    those of :class:`envs.ant_base.AntTaskEnv`: ``xml_file``,
    ``flip_handling``, ``pose_reset_every``, ``reset_noise_scale``, ``healthy_z_range``, ``render_mode``
    (None or "rgb_array": a top-down view of the whole arena, absent blocks hidden, goal region green),
    ``width``, ``height``.

    ## Version History
    * v0: first version, the paper's 9 layouts for training and a held-out family.
    """

    start_xy = START_XY

    def __init__(
        self,
        reward_type: str = "dense",
        goal_radius: float = 2.0,
        goal_bonus: float = 0.0,
        block_size: float = 15.2,
        ctrl_cost_weight: float = 0.1,
        train_layouts: Sequence[int] | None = None,
        test_layouts: str | None = None,
        **kwargs: Any,
    ) -> None:
        if reward_type not in ("dense", "sparse"):
            raise ValueError(f"AntMaze reward_type must be 'dense' or 'sparse', got {reward_type!r}.")
        if not 0.0 < block_size <= CELL_SIZE:
            raise ValueError(f"AntMaze block_size must be in (0, {CELL_SIZE}], got {block_size!r}.")
        self.goal_bonus = check_nonnegative_number(goal_bonus, "AntMaze goal_bonus", 100)
        self.reward_type = reward_type
        self.goal_radius = float(goal_radius)
        self.block_size = float(block_size)
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.layouts = LAYOUTS
        self._train_layouts = _check_train_layouts(train_layouts)
        self._test_layouts = _check_test_layouts(test_layouts, self._train_layouts)
        # blocked[t, j]: whether BLOCK_CELLS[j] holds a block in layout t.
        self._blocked = np.array([[cell not in lay.open_cells for cell in BLOCK_CELLS] for lay in LAYOUTS])
        self._goals = np.array([lay.goal for lay in LAYOUTS])
        super().__init__(**kwargs)
        self._block_geoms = np.array([self.model.geom(_block_name(cell)).id for cell in BLOCK_CELLS])
        self._goal_site = np.array([self.model.site("goal").id])

    def build_arena(self, spec: mujoco.MjSpec) -> None:
        spec.geom("floor").pos = [24.0, 0.0, 0.0]
        spec.geom("floor").size = [30.0, 30.0, 40.0]
        add_outer_walls(spec, ARENA_LOW, ARENA_HIGH)
        half = self.block_size / 2
        for cell in BLOCK_CELLS:
            add_box(spec, _block_name(cell), cell_center(cell), (half, half, 1.0))
        add_goal_marker(spec, self.goal_radius)
        add_top_camera(spec, (24.0, 0.0), 25.0)

    # -- task contract -------------------------------------------------------------------------
    def sample_task(self, rng: np.random.Generator) -> int:
        return self._train_layouts[int(rng.integers(len(self._train_layouts)))]

    @property
    def train_tasks(self) -> list[int]:
        return list(self._train_layouts)

    def sample_test_task(self, rng: np.random.Generator) -> int:
        return self._test_layouts[int(rng.integers(len(self._test_layouts)))]

    def validate_task(self, task: Any) -> int:
        meaning = f"index into envs.ant_maze.LAYOUTS: 0-{NUM_TRAIN_LAYOUTS - 1} paper layouts, the rest held out"
        return validate_index_task(task, len(LAYOUTS), meaning, "AntMaze")

    # -- batched hooks ---------------------------------------------------------------------------
    def task_params(self, tasks: Sequence[Any]) -> Params:
        index = np.asarray(tasks, dtype=np.int64)
        return {"goal": self._goals[index], "blocked": self._blocked[index]}

    def physics_fields(self, params: Params) -> ModelFields:
        # An absent block stays in the model but collides with nothing (one model for every layout, so
        # that the batch can hold simulations of different layouts).
        collides = params["blocked"].astype(np.int32)
        return {"geom_contype": (self._block_geoms, collides), "geom_conaffinity": (self._block_geoms, collides)}

    def visual_fields(self, params: Params) -> ModelFields:
        rgba = np.broadcast_to(np.asarray(WALL_RGBA, dtype=np.float32), (*params["blocked"].shape, 4)).copy()
        rgba[..., 3] = params["blocked"]
        goal = np.concatenate([params["goal"], np.full((len(params["goal"]), 1), 0.02)], axis=1)
        return {"geom_rgba": (self._block_geoms, rgba), "site_pos": (self._goal_site, goal[:, None])}

    def outcome(
        self, params: Params, xy_before: np.ndarray, qpos: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        goal = params["goal"]
        xy = qpos[:, :2]
        distance = np.linalg.norm(xy - goal, axis=1)
        reached = distance <= self.goal_radius
        toward = (self.planar_velocity(xy_before, qpos) * np.sign(goal - xy_before)).sum(axis=1)
        ctrl = self.control_cost(action)
        sparse = reached.astype(np.float64)
        reward = sparse if self.reward_type == "sparse" else toward + ctrl + self.goal_bonus * sparse
        terms = {
            "reward_velocity": toward,
            "reward_ctrl": ctrl,
            "reward_goal": sparse,
            "distance_to_goal": distance,
            "goal_reached": reached,
        }
        return reward, reached, terms


def _check_train_layouts(train_layouts: Sequence[int] | None) -> tuple[int, ...]:
    """The training layouts: the paper's 9 by default, else a non-empty list of layout indices, each checked as a
    task is (:func:`envs.base.validate_index_task`)."""
    if train_layouts is None:
        return tuple(range(NUM_TRAIN_LAYOUTS))
    message = (
        f"AntMaze train_layouts must be a non-empty list of layout indices in 0-{len(LAYOUTS) - 1}, "
        f"got {train_layouts!r}; e.g. +env.kwargs.train_layouts=[4] trains on straight right only."
    )
    try:
        layouts = tuple(validate_index_task(t, len(LAYOUTS), "a layout", "AntMaze") for t in train_layouts)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not layouts:
        raise ValueError(message)
    return layouts


def _check_test_layouts(test_layouts: str | None, train_layouts: Sequence[int]) -> tuple[int, ...]:
    """The held-out layouts :meth:`AntMaze.sample_test_task` draws from: every layout after the paper's 9 by
    default, or ``"training_kind"``: :data:`TRAINING_KIND_LAYOUTS`; either without the training layouts (a
    held-out maze is never one the run trained on, also when ``train_layouts`` names layouts after the 9)."""
    if test_layouts is None:
        candidates: Sequence[int] = range(NUM_TRAIN_LAYOUTS, len(LAYOUTS))
    elif test_layouts == "training_kind":
        candidates = TRAINING_KIND_LAYOUTS
    else:
        raise ValueError(
            f"AntMaze test_layouts must be null (every held-out layout) or 'training_kind', got {test_layouts!r}; "
            "e.g. +env.kwargs.test_layouts=training_kind."
        )
    trained = set(train_layouts)
    held_out = tuple(i for i in candidates if i not in trained)
    if not held_out:
        raise ValueError(
            f"AntMaze train_layouts {list(train_layouts)!r} hold every layout of test_layouts={test_layouts!r}, "
            "so no maze is left to hold out; train on fewer layouts or set +env.kwargs.test_layouts=null."
        )
    return held_out


def _block_name(cell: Cell) -> str:
    return f"block_{cell[0]}_{cell[1]}"


class AntMazeVector(AntBatchVectorEnv):
    """:class:`AntMaze` batched on ``mujoco.batch`` (the registered ``vector_entry_point``)."""

    env_class = AntMaze
