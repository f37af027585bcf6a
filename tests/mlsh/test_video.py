"""Video files: GIF and H.264 MP4 (padded to an even size), the ``video_format`` choice and its refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import imageio
import numpy as np
import pytest
from PIL import Image

from mlsh.errors import ConfigError
from mlsh.video import check_video_format, record_until_goal, write_mp4, write_video


def _frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """``count`` flat grey ``[height, width, 3]`` frames, lighter each step (so that no two frames are equal)."""
    return [np.full((height, width, 3), 40 + 20 * i, dtype=np.uint8) for i in range(count)]


def _read_mp4(path: Path) -> list[np.ndarray]:
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        assert reader.get_meta_data()["codec"] == "h264"
        assert reader.get_meta_data()["pix_fmt"].startswith("yuv420p")  # what browsers play
        return [frame for frame in reader]  # list() would ask len(), which is inf for a stream
    finally:
        reader.close()


def test_mp4_reads_back_with_every_frame(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "even.mp4", _frames(7, 32, 48), fps=10)
    assert path == tmp_path / "even.mp4" and path.stat().st_size > 0
    frames = _read_mp4(path)
    assert len(frames) == 7 and all(frame.shape == (32, 48, 3) for frame in frames)
    # H.264 is lossy: the flat grey of each frame comes back within a few levels.
    assert [int(np.median(frame)) for frame in frames] == pytest.approx([40 + 20 * i for i in range(7)], abs=3)


def test_an_odd_sized_mp4_gets_a_black_row_and_column(tmp_path: Path) -> None:
    frames = _read_mp4(write_mp4(tmp_path / "odd.mp4", _frames(5, 17, 21), fps=10))
    assert len(frames) == 5 and all(frame.shape == (18, 22, 3) for frame in frames)  # padded, not rescaled
    last = frames[-1].astype(int)
    assert abs(int(np.median(last[:17, :21])) - 120) <= 3
    assert last[17, 2:19].max() < 30 and last[2:15, 21].max() < 30  # the padding is black


@pytest.mark.parametrize(("video_format", "suffixes"), [("gif", ["gif"]), ("mp4", ["mp4"]), ("both", ["gif", "mp4"])])
def test_write_video_writes_the_chosen_formats(tmp_path: Path, video_format: str, suffixes: list[str]) -> None:
    paths = write_video(tmp_path / "agent_task00", _frames(4, 15, 20), 10, video_format)
    assert paths == [tmp_path / f"agent_task00.{suffix}" for suffix in suffixes]
    assert sorted(tmp_path.iterdir()) == paths and all(path.stat().st_size > 0 for path in paths)
    if "gif" in suffixes:
        with Image.open(tmp_path / "agent_task00.gif") as gif:
            assert gif.n_frames == 4 and gif.size == (20, 15)  # GIFs keep the odd size
    if "mp4" in suffixes:
        assert [frame.shape for frame in _read_mp4(tmp_path / "agent_task00.mp4")] == [(16, 20, 3)] * 4


def test_an_unknown_format_is_refused_writing_nothing(tmp_path: Path) -> None:
    message = "video_format must be one of gif, mp4, both, got 'avi'; set e.g. video_format=both."
    with pytest.raises(ConfigError) as info:
        write_video(tmp_path / "agent_task00", _frames(2, 8, 8), 10, "avi")
    assert str(info.value) == message
    with pytest.raises(ConfigError, match="got 3; set e.g. video_format=both"):
        check_video_format(3)
    assert list(tmp_path.iterdir()) == []


def test_mp4_without_imageio_ffmpeg_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import imageio_ffmpeg raises ImportError
    message = (
        "video_format=both writes MP4 videos with imageio-ffmpeg, which is not installed; run pip install "
        "imageio-ffmpeg (or set video_format=gif)."
    )
    with pytest.raises(ConfigError) as info:
        write_video(tmp_path / "agent_task00", _frames(2, 8, 8), 10, "both")
    assert str(info.value) == message
    assert list(tmp_path.iterdir()) == []  # refused before the GIF too
    assert check_video_format("both", need_writer=False) == ("gif", "mp4")  # no videos made: no package needed
    assert write_video(tmp_path / "agent_task00", _frames(2, 8, 8), 10, "gif") == [tmp_path / "agent_task00.gif"]


class _GoalOnThirdEpisode(gym.Env):
    """Three-step episodes whose info says ``goal_reached`` on the third episode only; grey frames."""

    metadata = {"render_modes": ["rgb_array"]}
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, goal_episode: int | None = 2, key: str = "goal_reached") -> None:
        self.render_mode, self.goal_episode, self.episodes, self.seeds, self.t = "rgb_array", goal_episode, -1, [], 0
        self.key = key

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        self.episodes, self.t = self.episodes + 1, 0
        self.seeds.append(seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        info = {} if self.goal_episode is None else {self.key: self.episodes == self.goal_episode and self.t == 3}
        return np.zeros(1, np.float32), 0.0, self.t == 3, False, info

    def render(self) -> np.ndarray:
        return np.full((8, 8, 3), 128, np.uint8)


class _FirstSubPolicy:
    def predict(self, obs, state, start, deterministic=False):  # noqa: ANN001, ANN201 (PolicyActor's signature)
        return 0, [np.zeros(1, np.int64)]


def test_record_until_goal_keeps_the_first_episode_that_reaches_the_goal() -> None:
    env = _GoalOnThirdEpisode()
    recording = record_until_goal(_FirstSubPolicy(), env, seed=7, tries=5)
    assert (len(env.seeds), recording.goal_reached, len(recording.frames)) == (3, True, 4)
    assert env.seeds == [7, 1007, 2007]
    env = _GoalOnThirdEpisode()
    recording = record_until_goal(_FirstSubPolicy(), env, seed=7, tries=2)
    assert (len(env.seeds), recording.goal_reached) == (2, False)  # none reached: the last is kept
    env = _GoalOnThirdEpisode(goal_episode=None)
    recording = record_until_goal(_FirstSubPolicy(), env, seed=7, tries=5)
    assert (len(env.seeds), recording.goal_reached) == (1, None)  # an env without goals: the first episode


def test_videos_read_gymnasiums_success_key_too() -> None:
    env = _GoalOnThirdEpisode(goal_episode=0, key="is_success")
    assert record_until_goal(_FirstSubPolicy(), env, seed=0, tries=3).goal_reached is True
    assert env.seeds == [0]
