"""Videos of an agent (a :class:`mlsh.actor.PolicyActor`, such as an :class:`agents.MLSHAgent`): the env's
``rgb_array`` frames with the active sub-policy in a banner on top."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from mlsh.actor import PolicyActor
from mlsh.errors import ConfigError

BANNER_HEIGHT = 16
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


def record_episode(
    agent: PolicyActor, env: gym.Env, seed: int | None = None, deterministic: bool = False
) -> tuple[list[np.ndarray], list[int], float]:
    """Runs one episode of ``agent`` in ``env`` (made with ``render_mode="rgb_array"``).

    Returns:
        ``(frames, sub_indices, return)``: one annotated frame before every step and one after the
        last (episode length + 1 frames); the sub-policy active at each step.
    """
    if env.render_mode != "rgb_array":
        raise ConfigError(
            f"Videos need an env made with render_mode='rgb_array', got {env.render_mode!r}; "
            f"{env.spec.id if env.spec else 'this env'} must support it (or run without video=true)."
        )
    obs, _ = env.reset(seed=seed)
    state, start = None, np.ones(1, dtype=bool)
    frames, subs, total, t = [], [], 0.0, 0
    while True:
        action, state = agent.predict(obs, state, start, deterministic=deterministic)
        sub = int(state[0][0])
        frames.append(annotate(env.render(), sub, f"sub-policy {sub}  t={t}  return={total:g}"))
        subs.append(sub)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        t += 1
        start = np.zeros(1, dtype=bool)
        if terminated or truncated:
            frames.append(annotate(env.render(), sub, f"sub-policy {sub}  t={t}  return={total:g}  (end)"))
            return frames, subs, total


def write_gif(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Writes ``frames`` as a looping GIF with Pillow."""
    from PIL import Image

    if not frames:
        raise ValueError("No frames to write.")
    images = [Image.fromarray(frame) for frame in frames]
    duration = max(1, round(1000 / fps))
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=False)
    return path
