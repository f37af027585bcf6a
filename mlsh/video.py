"""Videos of an agent (a :class:`mlsh.actor.PolicyActor`, such as an :class:`agents.MLSHAgent`): the env's
``rgb_array`` frames with the active sub-policy in a banner on top, written as a GIF (Pillow), an MP4
(imageio-ffmpeg) or both."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from mlsh.actor import PolicyActor
from mlsh.envs import success
from mlsh.errors import ConfigError

BANNER_HEIGHT = 16
# The choices of the ``video_format`` setting and the files each writes.
VIDEO_FORMATS: dict[str, tuple[str, ...]] = {"gif": ("gif",), "mp4": ("mp4",), "both": ("gif", "mp4")}
# One colour per sub-policy (matplotlib's tab10), repeated for K > 10.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def annotate(frame: np.ndarray, sub_idx: int, text: str) -> np.ndarray:
    """``frame [H, W, 3]`` with a ``BANNER_HEIGHT`` px banner on top in sub-policy ``sub_idx``'s colour,
    holding ``text``: ``[H + BANNER_HEIGHT, W, 3]`` uint8."""
    from PIL import Image, ImageDraw

    height, width = frame.shape[:2]
    image = Image.new("RGB", (width, height + BANNER_HEIGHT), PALETTE[sub_idx % len(PALETTE)])
    image.paste(Image.fromarray(np.ascontiguousarray(frame[..., :3], dtype=np.uint8)), (0, BANNER_HEIGHT))
    ImageDraw.Draw(image).text((3, 2), text, fill=(255, 255, 255))
    return np.asarray(image)


class Recording(NamedTuple):
    """One filmed episode (:func:`record_episode`)."""

    frames: list[np.ndarray]
    """One annotated frame before every step and one after the last (episode length + 1 frames)."""
    sub_indices: list[int]
    """The sub-policy active at each step."""
    total: float
    """The episode's return."""
    goal_reached: bool | None
    """Whether a step's info said the goal was reached (:func:`mlsh.envs.success`); None for envs that do not say."""


def record_episode(agent: PolicyActor, env: gym.Env, seed: int | None = None, deterministic: bool = False) -> Recording:
    """Runs one episode of ``agent`` in ``env`` (made with ``render_mode="rgb_array"``) and films it."""
    if env.render_mode != "rgb_array":
        raise ConfigError(
            f"Videos need an env made with render_mode='rgb_array', got {env.render_mode!r}; "
            f"{env.spec.id if env.spec else 'this env'} must support it (or run without video=true)."
        )
    obs, _ = env.reset(seed=seed)
    state, start = None, np.ones(1, dtype=bool)
    frames, subs, total, t = [], [], 0.0, 0
    reached: bool | None = None
    while True:
        action, state = agent.predict(obs, state, start, deterministic=deterministic)
        sub = int(state[0][0])
        frames.append(annotate(env.render(), sub, f"sub-policy {sub}  t={t}  return={total:g}"))
        subs.append(sub)
        obs, reward, terminated, truncated, info = env.step(action)
        reached_now = success(info)
        if reached_now is not None:
            reached = bool(reached) or reached_now
        total += float(reward)
        t += 1
        start = np.zeros(1, dtype=bool)
        if terminated or truncated:
            frames.append(annotate(env.render(), sub, f"sub-policy {sub}  t={t}  return={total:g}  (end)"))
            return Recording(frames, subs, total, reached)


def record_until_goal(agent: PolicyActor, env: gym.Env, seed: int, tries: int) -> Recording:
    """Films up to ``tries`` episodes (seeds ``seed``, ``seed + 1000``, ...) and returns the first that reaches the
    goal, else the last; on an env that does not say whether it reached one, the first."""
    for attempt in range(tries):
        recording = record_episode(agent, env, seed=seed + 1000 * attempt)
        if recording.goal_reached is not False:
            break
    return recording


def check_video_format(video_format: object, need_writer: bool = True) -> tuple[str, ...]:
    """The file suffixes of ``video_format`` (one of :data:`VIDEO_FORMATS`), checked before any video is made.

    Args:
        video_format: the ``video_format`` setting.
        need_writer: also check that the packages writing these formats are installed (videos will be made).

    Raises:
        ConfigError: an unknown format, or an MP4 without the imageio-ffmpeg package that writes it.
    """
    if not isinstance(video_format, str) or video_format not in VIDEO_FORMATS:
        raise ConfigError(
            f"video_format must be one of {', '.join(VIDEO_FORMATS)}, got {video_format!r}; set e.g. video_format=both."
        )
    suffixes = VIDEO_FORMATS[video_format]
    if need_writer and "mp4" in suffixes:
        try:
            import imageio_ffmpeg  # noqa: F401  (imageio's FFMPEG plugin: the ffmpeg binary that encodes H.264)
        except ImportError:
            raise ConfigError(
                f"video_format={video_format} writes MP4 videos with imageio-ffmpeg, which is not installed; run "
                f"pip install imageio-ffmpeg (or set video_format=gif)."
            ) from None
    return suffixes


def write_gif(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Writes ``frames`` as a looping GIF with Pillow."""
    from PIL import Image

    if not frames:
        raise ValueError("No frames to write.")
    images = [Image.fromarray(frame) for frame in frames]
    duration = max(1, round(1000 / fps))
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=False)
    return path


def write_mp4(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Writes ``frames`` (each ``[H, W, 3]`` uint8, all one size) as an H.264 MP4 with imageio-ffmpeg.

    H.264 in yuv420p (the pixel format browsers play) needs an even width and height: an odd size gets one black
    row at the bottom or column at the right, so the file is ``[H + H % 2, W + W % 2]``.

    Raises:
        ConfigError: imageio-ffmpeg is not installed.
    """
    import imageio

    check_video_format("mp4")
    if not frames:
        raise ValueError("No frames to write.")
    height, width = frames[0].shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    # macro_block_size=1: imageio would otherwise rescale the frames to a multiple of 16 pixels.
    writer = imageio.get_writer(
        path, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1
    )
    try:
        for frame in frames:
            writer.append_data(np.pad(np.ascontiguousarray(frame[..., :3], dtype=np.uint8), pad))
    finally:
        writer.close()
    return path


def write_video(path_stem: Path, frames: list[np.ndarray], fps: float, video_format: str) -> list[Path]:
    """Writes ``frames`` as ``<path_stem>.gif`` and/or ``<path_stem>.mp4``, as ``video_format`` says.

    Args:
        path_stem: the videos' path without a suffix.
        frames: ``[H, W, 3]`` uint8 frames, all one size (:func:`record_episode`'s).
        fps: frames per second.
        video_format: ``gif``, ``mp4`` or ``both`` (:data:`VIDEO_FORMATS`).

    Returns:
        The paths written, GIF first.

    Raises:
        ConfigError: ``video_format`` is unknown or needs a package that is missing (nothing is written).
    """
    writers = {"gif": write_gif, "mp4": write_mp4}
    suffixes = check_video_format(video_format)
    return [writers[suffix](path_stem.with_name(f"{path_stem.name}.{suffix}"), frames, fps) for suffix in suffixes]
