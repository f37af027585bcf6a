"""AntMaze: the layout family, maze geometry (goals reachable, blocks block) and both rewards."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from envs.ant_maze import (
    BLOCK_CELLS,
    LAYOUTS,
    NUM_TRAIN_LAYOUTS,
    PAPER_LAYOUTS,
    START_CELL,
    TRAINING_KIND_LAYOUTS,
    AntMaze,
    MazeLayout,
    cell_center,
    enumerate_layouts,
    goal_face,
    held_out_kinds,
    layout_kind,
    of_training_kind,
)

ENV_ID = "mlsh/AntMaze-v0"
DT = 0.05


def _touches_walls(env: AntMaze) -> bool:
    """Whether any ant geom touches a wall or block (after ``mj_forward``)."""
    model, data = env.model, env.data
    static = {model.geom(name).id for name in ("wall_top", "wall_bottom", "wall_left", "wall_right")}
    static |= {int(g) for g in env._block_geoms}
    ant_body = model.body("torso").id
    for contact in data.contact[: data.ncon]:
        pair = {int(contact.geom1), int(contact.geom2)}
        ant = [g for g in pair if model.body_rootid[model.geom_bodyid[g]] == ant_body]
        if ant and pair & static:
            return True
    return False


def test_layout_family_is_deterministic_and_starts_with_the_paper_layouts() -> None:
    assert len(LAYOUTS) == 162
    assert LAYOUTS[:NUM_TRAIN_LAYOUTS] == PAPER_LAYOUTS
    assert [layout.goal for layout in PAPER_LAYOUTS] == [
        (8, 24), (8, -24), (24, 24), (24, -24), (48, 0), (40, 24), (40, -24), (32, 16), (32, -16),
    ]  # fmt: skip
    assert enumerate_layouts() == enumerate_layouts()
    keys = {(frozenset(layout.open_cells), layout.goal) for layout in LAYOUTS}
    assert len(keys) == len(LAYOUTS), "every layout is distinct"
    for layout in LAYOUTS:
        assert layout.open_cells[0] == START_CELL
        for a, b in zip(layout.open_cells, layout.open_cells[1:]):
            assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1, "open cells form a walk"
        # The goal is the middle of a face of the last open cell.
        x, y = cell_center(layout.open_cells[-1])
        assert sorted([abs(layout.goal[0] - x), abs(layout.goal[1] - y)]) == [0.0, 8.0]


def test_training_tasks_are_the_paper_layouts_and_test_tasks_are_held_out() -> None:
    env = AntMaze()
    rng = np.random.default_rng(0)
    train = {env.sample_task(rng) for _ in range(300)}
    test = {env.sample_test_task(rng) for _ in range(3000)}
    assert train == set(range(NUM_TRAIN_LAYOUTS))
    assert min(test) == NUM_TRAIN_LAYOUTS and max(test) == len(LAYOUTS) - 1
    with pytest.raises(ValueError, match="index into envs.ant_maze.LAYOUTS"):
        env.task = len(LAYOUTS)


def test_train_layouts_restricts_the_training_draws_and_refuses_bad_indices() -> None:
    env = gym.make(ENV_ID, train_layouts=[4, 7]).unwrapped
    rng = np.random.default_rng(0)
    assert env.train_tasks == [4, 7]
    assert {env.sample_task(rng) for _ in range(100)} == {4, 7}
    # The default draws exactly as before the setting existed: the same indices from the same generator.
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [AntMaze().sample_task(a) for _ in range(50)] == [int(b.integers(NUM_TRAIN_LAYOUTS)) for _ in range(50)]
    for bad in ([], [len(LAYOUTS)], [-1], ["4"], [True], 4):
        with pytest.raises(ValueError, match=r"non-empty list of layout .*env\.kwargs\.train_layouts=\[4\]"):
            AntMaze(train_layouts=bad)


def test_held_out_draws_leave_out_layouts_named_for_training() -> None:
    left_faces = [10, 111, 65, 95]  # held-out layouts of the training kind with the goal on a left face
    env = AntMaze(train_layouts=[*range(NUM_TRAIN_LAYOUTS), *left_faces])
    rng = np.random.default_rng(0)
    test = {env.sample_test_task(rng) for _ in range(4000)}
    assert test == set(range(NUM_TRAIN_LAYOUTS, len(LAYOUTS))) - set(left_faces)
    kind = AntMaze(train_layouts=left_faces, test_layouts="training_kind")
    assert {kind.sample_test_task(rng) for _ in range(2000)} == set(TRAINING_KIND_LAYOUTS) - set(left_faces)
    with pytest.raises(ValueError, match=r"hold every layout of test_layouts='training_kind'.*train on fewer layouts"):
        AntMaze(train_layouts=list(TRAINING_KIND_LAYOUTS), test_layouts="training_kind")


def test_test_layouts_of_the_training_kind_are_the_held_out_short_forward_walks() -> None:
    assert all(of_training_kind(layout) for layout in PAPER_LAYOUTS)  # the rule describes the training layouts
    assert len(TRAINING_KIND_LAYOUTS) == 33 and min(TRAINING_KIND_LAYOUTS) >= NUM_TRAIN_LAYOUTS
    up_right_down = LAYOUTS[NUM_TRAIN_LAYOUTS:].index(MazeLayout(((1, 0), (0, 0), (0, 1), (1, 1)), (32.0, 0.0)))
    assert NUM_TRAIN_LAYOUTS + up_right_down not in TRAINING_KIND_LAYOUTS  # up leads away from the goal's y = 0
    assert not of_training_kind(MazeLayout(((1, 0), (1, 1), (0, 1), (0, 0)), (0.0, 16.0)))  # a move left
    rng = np.random.default_rng(0)
    assert {AntMaze(test_layouts="training_kind").sample_test_task(rng) for _ in range(2000)} == set(
        TRAINING_KIND_LAYOUTS
    )
    a, b = np.random.default_rng(5), np.random.default_rng(5)  # the default draws as before the setting existed
    assert [AntMaze().sample_test_task(a) for _ in range(50)] == [
        NUM_TRAIN_LAYOUTS + int(b.integers(len(LAYOUTS) - NUM_TRAIN_LAYOUTS)) for _ in range(50)
    ]
    assert held_out_kinds() == {"training_kind": 33, "left": 58, "long": 58, "away": 4}
    assert layout_kind(LAYOUTS[NUM_TRAIN_LAYOUTS + up_right_down]) == "away"
    with pytest.raises(ValueError, match=r"test_layouts must be null .* got 'near'; e.g. \+env.kwargs.test_layouts="):
        AntMaze(test_layouts="near")


def test_goal_face_names_the_face_of_the_last_cell_the_goal_lies_on() -> None:
    up = (START_CELL, (0, 0))  # the last cell's centre is (8, 16)
    assert goal_face(MazeLayout(up, (0.0, 16.0))) == "left"
    assert goal_face(MazeLayout(up, (16.0, 16.0))) == "right"
    assert goal_face(MazeLayout(up, (8.0, 24.0))) == "top_bottom"
    assert all(goal_face(layout) != "left" for layout in PAPER_LAYOUTS)  # no training maze needs a walk left
    assert sum(goal_face(layout) == "left" for layout in LAYOUTS[NUM_TRAIN_LAYOUTS:]) == 40


def test_every_layouts_goal_is_reachable_along_its_open_cells() -> None:
    # The torso is carried along the walk (start, then cell centres, then 1 unit short of the goal); the ant
    # must touch no wall or block on the way (absent blocks do not collide) and end in the goal region.
    env = AntMaze()
    for task, layout in enumerate(LAYOUTS):
        env.reset(seed=0, options={"task": task})
        goal = np.asarray(layout.goal)
        last = np.asarray(cell_center(layout.open_cells[-1]))
        end = goal + (last - goal) / np.linalg.norm(last - goal)
        points = [np.asarray((2.0, 0.0)), *[np.asarray(cell_center(c)) for c in layout.open_cells], end]
        for a, b in zip(points, points[1:]):
            for t in np.linspace(0.0, 1.0, 9):
                env.place_ant(tuple(a + t * (b - a)))
                assert not _touches_walls(env), f"layout {task} blocked at {a + t * (b - a)}"
        info = env.step(np.zeros(8))[4]
        assert info["goal_reached"], f"layout {task}: goal not reached at {end}"


def test_blocks_of_the_layout_collide_and_absent_ones_do_not() -> None:
    env = AntMaze()
    for task in (0, 4, 20):
        env.reset(seed=0, options={"task": task})
        blocked = [cell not in LAYOUTS[task].open_cells for cell in BLOCK_CELLS]
        np.testing.assert_array_equal(env.model.geom_contype[env._block_geoms], blocked)
        np.testing.assert_array_equal(env.model.geom_conaffinity[env._block_geoms], blocked)
        np.testing.assert_array_equal(env.model.geom_rgba[env._block_geoms, 3], blocked)
        # An ant placed on cell (1, 1) touches its block exactly when the layout has one there.
        env.place_ant(cell_center((1, 1)))
        assert _touches_walls(env) == ((1, 1) not in LAYOUTS[task].open_cells)
        env.place_ant((16.0, 0.0))  # 0.4 from the face of the block: the legs reach it
        assert _touches_walls(env) == ((1, 1) not in LAYOUTS[task].open_cells)


@pytest.mark.parametrize(("task", "passes"), [(0, False), (4, True)])
def test_an_ant_pushed_into_a_block_does_not_pass(task: int, passes: bool) -> None:
    # Layout 0 ("up") has a block in cell (1, 1), whose face is at x = 16.4; layout 4 ("straight right")
    # leaves it open, so the same push carries the ant through (the test can fail).
    env = AntMaze()
    env.reset(seed=0, options={"task": task})
    env.place_ant((12.0, 0.0))
    torso = env.model.body("torso").id
    push = 10 * 9.81 * env.model.body_subtreemass[torso]
    xs = []
    for _ in range(100):
        env.data.xfrc_applied[torso, 0] = push
        xs.append(env.step(np.zeros(8))[0][0])
    if passes:
        assert max(xs) > 20.0
    else:
        assert max(xs) < 16.4


def test_the_outer_wall_holds_a_pushed_ant() -> None:
    env = AntMaze()
    env.reset(seed=0, options={"task": 4})
    env.place_ant((44.0, 0.0))
    torso = env.model.body("torso").id
    for _ in range(100):
        env.data.xfrc_applied[torso, 0] = 10 * 9.81 * env.model.body_subtreemass[torso]
        x = env.step(np.zeros(8))[0][0]
        assert x < 48.0


def test_dense_reward_is_velocity_toward_the_goal_per_axis_minus_control_cost() -> None:
    env = AntMaze()
    env.reset(seed=0, options={"task": 0})  # goal (8, 24)
    params = env.task_params([0, 0, 5])  # goals (8, 24), (8, 24), (40, 24)
    before = np.array([[2.0, 0.0], [9.0, 0.0], [2.0, 0.0]])
    after = np.zeros((3, 15))
    after[:, :2] = before + [[0.1, 0.2], [0.1, 0.2], [-0.05, -0.1]]
    action = np.full((3, 8), 0.5)
    reward, terminated, terms = env.outcome(params, before, after, action)
    # (0.1 / dt) * sign(goal_x - x) + (0.2 / dt) * sign(goal_y - y) - 0.1 * 8 * 0.25
    np.testing.assert_allclose(terms["reward_velocity"], [2.0 + 4.0, -2.0 + 4.0, -1.0 - 2.0])
    np.testing.assert_allclose(terms["reward_ctrl"], -0.2)
    np.testing.assert_allclose(reward, terms["reward_velocity"] - 0.2)
    assert not terminated.any()
    # Through a real step: the reward follows the torso's displacement.
    obs, _ = env.reset(seed=1)
    action = np.full(8, 0.3, dtype=np.float32)
    next_obs, reward, _, _, info = env.step(action)
    goal = np.array(LAYOUTS[0].goal)
    expected = ((next_obs[:2] - obs[:2]) / DT * np.sign(goal - obs[:2])).sum()
    assert info["reward_velocity"] == pytest.approx(expected)
    assert reward == pytest.approx(expected - 0.1 * 8 * 0.09)


def test_sparse_reward_is_one_on_entering_the_goal_region_which_ends_the_episode() -> None:
    env = gym.make(ENV_ID, reward_type="sparse")
    env.reset(seed=0, options={"task": 4})  # goal (48, 0)
    obs, reward, terminated, _, info = env.step(np.zeros(8))
    assert (reward, terminated, info["goal_reached"]) == (0.0, False, False)
    env.unwrapped.place_ant((46.5, 0.0))
    obs, reward, terminated, _, info = env.step(np.zeros(8))
    assert (reward, terminated, info["goal_reached"]) == (1.0, True, True)
    assert info["distance_to_goal"] <= 2.0
    env.unwrapped.place_ant((45.0, 2.0))  # 3.6 from the goal: outside the region
    assert env.step(np.zeros(8))[1] == 0.0


def test_goal_bonus_is_added_to_the_dense_reward_on_entering_the_goal_region() -> None:
    env = gym.make(ENV_ID, goal_bonus=100.0)
    env.reset(seed=0, options={"task": 4})  # goal (48, 0)
    _, reward, terminated, _, info = env.step(np.zeros(8))
    assert not terminated and reward == pytest.approx(info["reward_velocity"] + info["reward_ctrl"])
    env.unwrapped.place_ant((46.5, 0.0))
    _, reward, terminated, _, info = env.step(np.zeros(8))
    assert terminated and info["goal_reached"]
    assert reward == pytest.approx(info["reward_velocity"] + info["reward_ctrl"] + 100.0)
    for bad in (-1.0, float("inf"), "big", True):
        with pytest.raises(ValueError, match="AntMaze goal_bonus must be a finite number >= 0"):
            AntMaze(goal_bonus=bad)


def test_pose_reset_sets_a_flipped_ant_upright_where_it_stands() -> None:
    env = AntMaze(pose_reset_every=5)
    env.reset(seed=0, options={"task": 4})
    qpos = env.data.qpos.copy()
    qpos[:3] = [20.0, 1.0, 0.3]
    qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # upside down
    env.set_state(qpos, np.zeros_like(env.data.qvel))
    for _ in range(4):
        obs = env.step(np.zeros(8))[0]
    assert obs[3] < 0.5, "still upside down before the pose reset"
    xy = obs[:2].copy()
    obs, _, terminated, _, _ = env.step(np.zeros(8))
    assert obs[3] > 0.9 and obs[2] > 0.6, "upright after the pose reset"
    np.testing.assert_allclose(obs[:2], xy, atol=0.05)
    assert not terminated
    falling = AntMaze(flip_handling="terminate")
    falling.reset(seed=0)
    falling.set_state(qpos, np.zeros_like(falling.data.qvel))
    assert falling.step(np.zeros(8))[2], "a fall terminates with flip_handling='terminate'"


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="reward_type must be 'dense' or 'sparse'"):
        AntMaze(reward_type="shaped")
    with pytest.raises(ValueError, match="flip_handling must be"):
        AntMaze(flip_handling="ignore")
    with pytest.raises(ValueError, match="action must have shape"):
        env = AntMaze()
        env.reset(seed=0)
        env.step(np.zeros(3))


@pytest.mark.render
def test_render_shows_the_whole_arena_from_above() -> None:
    env = AntMaze(render_mode="rgb_array", width=96, height=96)
    env.reset(seed=0, options={"task": 4})
    try:
        image = env.render()
    except (mujoco.FatalError, RuntimeError, ImportError, AttributeError) as exc:  # no OpenGL here
        pytest.skip(f"no OpenGL context: {exc}")
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    # Straight right: the middle row is open floor (dark checks), the top and bottom rows are blocks (light).
    middle, top = image[40:56, 20:76].mean(), image[10:30, 20:76].mean()
    assert middle < top - 30
    vec = gym.make_vec(ENV_ID, num_envs=2, render_mode="rgb_array", width=96, height=96)
    vec.set_attr("task", [4, 0])
    vec.reset(seed=0)
    frames = vec.render()
    assert len(frames) == 2 and not np.array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames[0], image)


def test_open_floor_has_the_maze_s_body_and_start_and_nothing_in_the_way() -> None:
    maze = AntMaze(reset_noise_scale=0.0, pose_reset_every=50)
    floor = maze.open_floor()
    assert floor.observation_space == maze.observation_space and floor.action_space == maze.action_space
    assert (floor.pose_reset_every, floor.reset_noise_scale) == (50, 0.0)
    maze_obs, _ = maze.reset(seed=0)
    floor_obs, _ = floor.reset(seed=0)
    np.testing.assert_allclose(floor_obs, maze_obs)  # same start, same pose
    # Pushed left from the start (2, 0), the maze's wall at x = 0 stops the ant; the floor lets it through.
    for env in (maze, floor):
        qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
        qvel[0] = -10.0
        env.set_state(qpos, qvel)
        for _ in range(20):
            _, reward, terminated, _, _ = env.step(np.zeros(8, dtype=np.float32))
    assert maze.agent_position[0] > -0.5 and floor.agent_position[0] < -2.0
    assert reward == 0.0 and not terminated  # the floor pays nothing and never ends
    maze.close()
    floor.close()
