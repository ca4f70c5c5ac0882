"""Render one episode of an agent to a GIF (pillow) or MP4 (imageio with imageio-ffmpeg or PyAV): `--video`.

MuJoCo picks its OpenGL backend (MUJOCO_GL = egl | osmesa | glfw) once per process, when OpenGL is first loaded, so a
backend that fails cannot be swapped for another in the same process. Each backend is therefore tried in a child
process (`python -m decision_minrnn.rollout.video ...`), in order: $MUJOCO_GL if set, else egl, osmesa, glfw. When none
works the result says so, with each backend's error, and no file is written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import UserInputError

FORMATS = (".gif", ".mp4")
BACKENDS = ("egl", "osmesa", "glfw")
GL_OFF = ("disable", "disabled", "off", "false", "0")
FRAME_SIZE = (320, 240)  # width, height
TARGET_FPS = 30.0


def check_video_path(path: str | os.PathLike) -> Path:
    """A .gif or .mp4 path (UserInputError otherwise)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UserInputError(f"--video {path}: use a .gif (pillow) or .mp4 (imageio-ffmpeg or PyAV) file name")
    if path.is_dir():
        raise UserInputError(f"--video {path} is a folder; give a file name")
    return path


def mp4_writer_missing() -> str | None:
    """Why MP4 cannot be written here, or None."""
    import importlib.util

    if importlib.util.find_spec("imageio") is None:
        return "writing MP4 needs imageio with imageio-ffmpeg or PyAV (pip install imageio imageio-ffmpeg)"
    if importlib.util.find_spec("imageio_ffmpeg") is None and importlib.util.find_spec("av") is None:
        return "writing MP4 needs imageio-ffmpeg or PyAV (pip install imageio-ffmpeg); a .gif path works with pillow"
    return None


def render_video(agent_dir: str | os.PathLike, path: str | os.PathLike, *, seed: int = 0,
                 target_return: float | None = None, rollout: str | None = None,
                 max_steps: int | None = None) -> dict[str, Any]:
    """Render one episode; returns {"written": bool, "path", "backend", "frames", "return", "length", "reason"}."""
    path = check_video_path(path)
    result: dict[str, Any] = {"written": False, "path": str(path), "backend": None}
    if path.suffix.lower() == ".mp4" and (why := mp4_writer_missing()):
        return {**result, "reason": why}
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen in GL_OFF:
        return {**result, "reason": f"MUJOCO_GL={os.environ['MUJOCO_GL']} turns MuJoCo rendering off; set "
                                    "MUJOCO_GL=egl (GPU or Mesa) or osmesa (software) to render"}
    errors = []
    for backend in ([chosen] if chosen else BACKENDS):
        env = {**os.environ, "MUJOCO_GL": backend}
        if backend in ("egl", "osmesa"):
            env["PYOPENGL_PLATFORM"] = backend
        cmd = [sys.executable, "-m", "decision_minrnn.rollout.video", str(agent_dir), str(path), "--seed", str(seed)]
        if target_return is not None:
            cmd += ["--target-return", repr(float(target_return))]
        if rollout is not None:
            cmd += ["--rollout", rollout]
        if max_steps is not None:
            cmd += ["--max-steps", str(int(max_steps))]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            return {**result, **json.loads(proc.stdout.strip().splitlines()[-1]), "written": True, "backend": backend}
        last = (proc.stderr.strip().splitlines() or ["exit code %d" % proc.returncode])[-1]
        errors.append(f"{backend}: {last}")
    return {**result, "reason": "no MuJoCo rendering backend works here (" + "; ".join(errors) + "); install EGL "
                                "(libegl1) or OSMesa (libosmesa6) and set MUJOCO_GL"}


def _record(agent_dir: str, path: Path, seed: int, target_return: float | None, rollout: str | None,
            max_steps: int | None) -> dict[str, Any]:
    """In the child process: run one episode with rendering on and write the frames."""
    import numpy as np

    from ..agent.policy import load_policy
    from ..io import atomic_path
    from .envs import make_env

    policy = load_policy(agent_dir, target_return=target_return, device="cpu", rollout=rollout)
    kwargs = {} if max_steps is None else {"max_episode_steps": max_steps}
    env = make_env(policy.meta.env_id, render_mode="rgb_array", width=FRAME_SIZE[0], height=FRAME_SIZE[1], **kwargs)
    fps = float(env.metadata.get("render_fps", TARGET_FPS))
    stride = max(1, round(fps / TARGET_FPS))
    obs, _ = env.reset(seed=seed)
    policy.reset(1)
    frames = [env.render()]
    total, length, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        done = terminated or truncated
        policy.observe(reward, done)
        total += float(reward)
        length += 1
        if length % stride == 0 or done:
            frames.append(env.render())
    env.close()
    out_fps = fps / stride
    with atomic_path(path) as tmp:  # tmp keeps the target's file name, so its suffix picks the format
        if path.suffix.lower() == ".gif":
            from PIL import Image

            images = [Image.fromarray(np.asarray(f)) for f in frames]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=int(round(1000 / out_fps)), loop=0)
        else:
            import imageio.v2 as imageio

            imageio.mimwrite(tmp, frames, fps=out_fps, macro_block_size=1)
    return {"frames": len(frames), "fps": out_fps, "return": total, "length": length}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decision_minrnn.rollout.video", description="render one episode (internal)")
    p.add_argument("agent")
    p.add_argument("path", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target-return", type=float)
    p.add_argument("--rollout")
    p.add_argument("--max-steps", type=int)
    args = p.parse_args(argv)
    try:
        info = _record(args.agent, args.path, args.seed, args.target_return, args.rollout, args.max_steps)
    except Exception as e:  # noqa: BLE001 - the parent reports this line as the backend's failure
        print(f"{type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        return 1
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
