"""Four rooms with slippery moves and a goal cell per task (MLSH paper, section 6.2; Sutton et al., 1999)."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import rendering
from envs.base import TaskEnv

Cell = tuple[int, int]

# Sutton, Precup and Singh's 13x13 four-rooms layout, outer walls included ('w' wall, ' ' free).
LAYOUT = (
    "wwwwwwwwwwwww",
    "w     w     w",
    "w     w     w",
    "w           w",
    "w     w     w",
    "w     w     w",
    "ww wwww     w",
    "w     www www",
    "w     w     w",
    "w     w     w",
    "w           w",
    "w     w     w",
    "wwwwwwwwwwwww",
)
GRID_SIZE = len(LAYOUT)
FREE_CELLS: tuple[Cell, ...] = tuple(
    (row, col) for row, line in enumerate(LAYOUT) for col, char in enumerate(line) if char == " "
)
assert len(FREE_CELLS) == 104, "the four-rooms layout has 104 free cells"
_CELL_INDEX = {cell: index for index, cell in enumerate(FREE_CELLS)}

START_CELL: Cell = (1, 1)  # top-left corner of the top-left room
DEFAULT_HORIZON = 100  # the paper's episode length T, also the registered time limit

# Held-out goals for evaluation on unseen tasks: a fixed ~20% of the free cells, drawn with an internal
# seed so that the split is the same for every user seed. The start cell is in neither split: with the
# fixed start, a goal there would be reached before the first move.
HELDOUT_FRACTION = 0.2
_SPLIT_SEED = 12345
_GOAL_CANDIDATES = [cell for cell in FREE_CELLS if cell != START_CELL]
_num_heldout = round(HELDOUT_FRACTION * len(FREE_CELLS))
_permutation = np.random.default_rng(_SPLIT_SEED).permutation(len(_GOAL_CANDIDATES))
HELDOUT_GOALS: tuple[Cell, ...] = tuple(sorted(_GOAL_CANDIDATES[i] for i in _permutation[:_num_heldout]))
TRAIN_GOALS: tuple[Cell, ...] = tuple(sorted(_GOAL_CANDIDATES[i] for i in _permutation[_num_heldout:]))

# Action index -> (d_row, d_col): up, down, left, right.
MOVES: tuple[Cell, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))
# With probability 1/3 the move is replaced by one of the other three, uniformly (paper: "moves slip with
# probability 1/3"), so the intended move happens with probability 2/3 and each other with 1/9.
SLIP_PROB = 1.0 / 3.0
_SLIP_CHOICES = tuple(tuple(d for d in range(4) if d != action) for action in range(4))
# _TRANSITION_PROBS[action, direction]: probability that ``action`` moves in ``direction``.
_TRANSITION_PROBS = np.full((4, 4), SLIP_PROB / 3.0)
np.fill_diagonal(_TRANSITION_PROBS, 1.0 - SLIP_PROB)


def _move(cell: Cell, direction: int) -> Cell:
    """The cell after moving in ``direction``; a move into a wall leaves the agent in place."""
    row, col = cell[0] + MOVES[direction][0], cell[1] + MOVES[direction][1]
    return (row, col) if LAYOUT[row][col] == " " else cell


# _NEXT_INDEX[state, direction]: index of the free cell reached from ``state`` moving in ``direction``.
_NEXT_INDEX = np.array([[_CELL_INDEX[_move(cell, d)] for d in range(4)] for cell in FREE_CELLS])


def _check_cell(cell: Any, what: str) -> Cell:
    """``cell`` as a ``(row, col)`` tuple of ints, or ``ValueError`` naming what is accepted."""
    message = (
        f"FourRooms {what} must be a free cell (row, col): a pair of ints in [0, {GRID_SIZE}) that is not a wall "
        f"of the layout (envs.four_rooms.FREE_CELLS lists them), got {cell!r}."
    )
    try:
        row, col = cell
        valid = all(not isinstance(v, (bool, np.bool_)) and int(v) == v for v in (row, col))
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not valid or (int(row), int(col)) not in _CELL_INDEX:
        raise ValueError(message)
    return int(row), int(col)


@functools.lru_cache(maxsize=256)
def _value_tables(goal: Cell, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite-horizon value iteration for reaching ``goal`` under the slip dynamics.

    Returns:
        ``values[h, s]``: the highest probability of ending a step on the goal within ``h`` steps from
        free cell ``s`` (not counting being there at the start), ``[horizon + 1, 104]``; and
        ``actions[h, s]``: an action achieving it with ``h`` steps left, ``[horizon + 1, 104]``
        (row 0 is unused).
    """
    num_states = len(FREE_CELLS)
    goal_index = _CELL_INDEX[goal]
    values = np.zeros((horizon + 1, num_states))
    actions = np.zeros((horizon + 1, num_states), dtype=np.int64)
    for h in range(1, horizon + 1):
        after = values[h - 1].copy()
        after[goal_index] = 1.0  # reaching the goal ends the episode with reward 1
        q_values = after[_NEXT_INDEX] @ _TRANSITION_PROBS.T  # [state, action]
        actions[h] = np.argmax(q_values, axis=1)
        values[h] = q_values[np.arange(num_states), actions[h]]
    values.setflags(write=False)
    actions.setflags(write=False)
    return values, actions


def optimal_success_probability(start: Cell, goal: Cell, horizon: int = DEFAULT_HORIZON) -> float:
    """The best achievable probability of reaching ``goal`` from ``start`` within ``horizon`` steps.

    This is the best expected return of an episode of ``horizon`` steps (reward 1 at the goal, once).
    A ``start`` equal to ``goal`` counts only a later return to the goal, as in the env.
    """
    start, goal = _check_cell(start, "start"), _check_cell(goal, "goal")
    if horizon < 0:
        raise ValueError(f"horizon must be at least 0, got {horizon}.")
    values, _ = _value_tables(goal, int(horizon))
    return float(values[int(horizon), _CELL_INDEX[start]])


class FourRooms(TaskEnv[Cell]):
    """Reach a goal cell of Sutton's four-rooms grid with slippery moves; the goal cell is the task.

    ## Description
    A 13x13 grid (outer walls included) split into four rooms joined by four one-cell doorways,
    with 104 free cells. The agent starts in the corner of the top-left room and must reach a goal
    cell, which is the task: it is never observed and persists across resets. Moves slip: with
    probability 1/3 the chosen move is replaced by one of the three others, uniformly. This is the
    "four rooms" task of Frans et al. (2018), section 6.2, after Sutton, Precup and Singh (1999).

    Goals are split once and for all into training goals (``train_goals``, drawn by
    :meth:`sample_task`) and about 20% held-out goals (``heldout_goals``, drawn by
    :meth:`sample_test_task`) for evaluation on unseen tasks; the split uses a fixed internal seed and
    never contains the start cell.

    ## Action Space
    ``Discrete(4)``: 0 up (row - 1), 1 down (row + 1), 2 left (col - 1), 3 right (col + 1).
    The move actually made is the chosen one with probability 2/3 and each other one with
    probability 1/9 (``info["slipped"]``). A move into a wall leaves the agent in place.

    ## Observation Space
    ``obs_mode="onehot"``: ``Box(0, 1, (104,), float32)``, one-hot over the free cells in row-major
    order (``envs.four_rooms.FREE_CELLS``). ``obs_mode="rowcol"``: ``Box(0, 1, (2,), float32)``, the
    agent's (row, col) divided by 12. The goal is never observed.

    ## Rewards
    1 on the step that ends on the goal cell, else 0 (``info["reward_goal"]``). The return of an
    episode is the probability of reaching the goal in time; :meth:`oracle_action` maximises it
    (finite-horizon value iteration with the true slip probabilities) and
    :func:`optimal_success_probability` gives its value.

    ## Starting State
    The agent starts at ``START_CELL`` = (1, 1). With ``random_start=True`` it starts on a uniformly
    drawn free cell other than the goal at each reset. ``reset(options={"start": (row, col)})``
    places it on a given free cell for that episode.

    ## Episode End
    Terminates on reaching the goal. Truncation after ``max_episode_steps`` (100, by the registered
    ``TimeLimit``).

    ## Arguments
    ``obs_mode`` ("onehot" or "rowcol"), ``random_start`` (False), ``horizon`` (100: the episode
    length the oracle plans for; set it to ``max_episode_steps`` if you change the time limit),
    ``render_mode`` (None or "rgb_array": a 208x208x3 image, 16 px per cell, walls dark gray, goal
    green, agent red).

    ## Version History
    * v0: first version, settings of the paper (slip 1/3, T = 100, fixed start).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    state_attributes: ClassVar[tuple[str, ...] | None] = ("_cell", "_steps")

    cell_pixels = 16

    def __init__(
        self,
        obs_mode: str = "onehot",
        random_start: bool = False,
        horizon: int = DEFAULT_HORIZON,
        render_mode: str | None = None,
    ) -> None:
        if obs_mode not in ("onehot", "rowcol"):
            raise ValueError(f"FourRooms obs_mode must be 'onehot' or 'rowcol', got {obs_mode!r}.")
        if int(horizon) != horizon or horizon < 1:
            raise ValueError(f"FourRooms horizon must be a positive int (the episode length), got {horizon!r}.")
        self.obs_mode = obs_mode
        self.random_start = bool(random_start)
        self.horizon = int(horizon)
        self._set_render_mode(render_mode)
        self.train_goals: list[Cell] = list(TRAIN_GOALS)
        self.heldout_goals: list[Cell] = list(HELDOUT_GOALS)
        self.action_space = spaces.Discrete(4)
        size = len(FREE_CELLS) if obs_mode == "onehot" else 2
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self._cell: Cell = START_CELL
        self._steps = 0
        super().__init__()

    # -- task contract -------------------------------------------------------------------------
    def sample_task(self, rng: np.random.Generator) -> Cell:
        return self.train_goals[int(rng.integers(len(self.train_goals)))]

    @property
    def train_tasks(self) -> list[Cell]:
        return list(self.train_goals)

    def sample_test_task(self, rng: np.random.Generator) -> Cell:
        return self.heldout_goals[int(rng.integers(len(self.heldout_goals)))]

    def validate_task(self, task: Any) -> Cell:
        return _check_cell(task, "task (the goal)")

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._apply_reset_options(options)
        if options and options.get("start") is not None:
            self._cell = _check_cell(options["start"], "start")
        elif self.random_start:
            candidates = [cell for cell in FREE_CELLS if cell != self._task]
            self._cell = candidates[int(self.np_random.integers(len(candidates)))]
        else:
            self._cell = START_CELL
        self._steps = 0
        return self._obs(), {"reward_goal": 0.0, "slipped": False, "cell": self._cell}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        index = int(action)
        if index != action or not 0 <= index < 4:
            raise ValueError(f"FourRooms action must be an int in [0, 4), got {action!r}.")
        # One draw of nine equally likely outcomes: six keep the move (2/3), one each for the others (1/9).
        outcome = int(self.np_random.integers(9))
        slipped = outcome >= 6
        direction = _SLIP_CHOICES[index][outcome - 6] if slipped else index
        self._cell = _move(self._cell, direction)
        self._steps += 1
        reward = 1.0 if self._cell == self._task else 0.0
        info = {"reward_goal": reward, "slipped": slipped, "cell": self._cell}
        return self._obs(), reward, reward > 0.0, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn(
                "FourRooms.render() called without a render_mode; make the env with render_mode='rgb_array'."
            )
            return None
        px = self.cell_pixels
        image = rendering.canvas(GRID_SIZE * px, GRID_SIZE * px)
        for row, line in enumerate(LAYOUT):
            for col, char in enumerate(line):
                if char == "w":
                    image[row * px : (row + 1) * px, col * px : (col + 1) * px] = rendering.WALL
        top, left = self._task[0] * px, self._task[1] * px
        image[top + 1 : top + px - 1, left + 1 : left + px - 1] = rendering.GREEN  # a 1 px margin shows the grid
        centre = ((self._cell[0] + 0.5) * px, (self._cell[1] + 0.5) * px)
        rendering.fill_disc(image, centre, 0.35 * px, rendering.AGENT)
        return image

    # -- oracle --------------------------------------------------------------------------------
    def oracle_action(self) -> int:
        """The action maximising the probability of reaching the goal in the ``horizon - steps`` steps left.

        Past the horizon (an env used without its time limit) it plans for a full ``horizon`` again.
        """
        steps_left = self.horizon - self._steps if self._steps < self.horizon else self.horizon
        _, actions = _value_tables(self._task, self.horizon)
        return int(actions[steps_left, _CELL_INDEX[self._cell]])

    # -- helpers -------------------------------------------------------------------------------
    @property
    def cell(self) -> Cell:
        """The agent's current cell (row, col)."""
        return self._cell

    position_is_cell = True

    @property
    def agent_position(self) -> np.ndarray:
        """The agent's cell (row, col) as ``[2]`` float (``position_is_cell``)."""
        return np.asarray(self._cell, dtype=float)

    def _obs(self) -> np.ndarray:
        if self.obs_mode == "onehot":
            obs = np.zeros(len(FREE_CELLS), dtype=np.float32)
            obs[_CELL_INDEX[self._cell]] = 1.0
            return obs
        return np.array(self._cell, dtype=np.float32) / np.float32(GRID_SIZE - 1)
