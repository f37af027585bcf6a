"""The import layering: envs -> core -> evaluation -> agents -> command lines and scripts; no arrow points up.

Every import counts, module level or inside a function: a lazy import still ties the lower layer to
the upper one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The layers inside mlsh/, lowest first; a module may import its own layer and the ones below.
MLSH_LAYERS: dict[str, int] = {
    **dict.fromkeys(
        [
            "errors",
            "config",
            "checks",
            "threads",
            "envs",
            "pretrained",
            "checkpoint",
            "networks",
            "policy",
            "schedule",
            "rollout",
            "gae",
            "ppo",
            "update",
            "distributed",
            "meta",
            "actor",
            "logger",
            "rundir",
            "trainer",
        ],
        0,
    ),  # core
    **dict.fromkeys(["evaluation", "report", "video"], 1),  # evaluation
    **dict.fromkeys(["cli", "train", "evaluate", "inspect"], 3),  # command lines (agents/ is layer 2)
}
PACKAGE_LAYERS = {"envs": -1, "agents": 2, "scripts": 4}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as dotted names (``from a import b`` gives ``a.b`` and ``a``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _layer(name: str) -> int | None:
    """The layer of an imported module of this repo (None: a third-party module or ``mlsh`` itself)."""
    parts = name.split(".")
    if parts[0] in PACKAGE_LAYERS:
        return PACKAGE_LAYERS[parts[0]]
    if parts[0] == "mlsh" and len(parts) > 1 and parts[1] in MLSH_LAYERS:
        return MLSH_LAYERS[parts[1]]
    return None


def _sources() -> list[tuple[str, Path]]:
    files = [("mlsh", p) for p in sorted((ROOT / "mlsh").glob("*.py")) if p.name != "__init__.py"]
    files += [("envs", p) for p in sorted((ROOT / "envs").glob("*.py"))]
    files += [("agents", p) for p in sorted((ROOT / "agents").glob("*.py"))]
    return files


def test_every_mlsh_module_has_a_layer() -> None:
    modules = {p.stem for p in (ROOT / "mlsh").glob("*.py")} - {"__init__"}
    assert modules <= set(MLSH_LAYERS), f"give {sorted(modules - set(MLSH_LAYERS))} a layer in MLSH_LAYERS"


@pytest.mark.parametrize(("package", "path"), _sources(), ids=lambda x: str(x.name) if isinstance(x, Path) else x)
def test_imports_point_down(package: str, path: Path) -> None:
    own = MLSH_LAYERS[path.stem] if package == "mlsh" else PACKAGE_LAYERS[package]
    upward = sorted(name for name in _imports(path) if (layer := _layer(name)) is not None and layer > own)
    assert not upward, f"{package}/{path.name} (layer {own}) imports a higher layer: {upward}"


def test_envs_know_nothing_of_mlsh() -> None:
    for path in sorted((ROOT / "envs").glob("*.py")):
        found = sorted(name for name in _imports(path) if name.split(".")[0] in ("mlsh", "agents", "scripts"))
        assert not found, f"envs/{path.name} imports {found}"


def test_mlsh_imports_no_user_layer_and_no_env_implementation() -> None:
    """The library under ``mlsh/`` stands without ``agents/`` and ``scripts/``, and knows the envs through
    the registry and the task contract (``envs``, ``envs.base``) only."""
    for path in sorted((ROOT / "mlsh").glob("*.py")):
        names = _imports(path)
        user = sorted(name for name in names if name.split(".")[0] in ("agents", "scripts"))
        assert not user, f"mlsh/{path.name} imports {user}"
        env_modules = sorted(
            name for name in names if name.startswith("envs.") and name.split(".")[1] not in ("base", "TaskEnv")
        )
        assert not env_modules, f"mlsh/{path.name} imports env implementations {env_modules}"
