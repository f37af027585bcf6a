"""The README and the docs show commands that run, and the README stays a front page.

Every command line in a fenced ``bash`` block of README.md and of the docs pages is checked without
running anything: ``python -m mlsh.train/evaluate/inspect`` overrides are composed by Hydra from the
package's configs and validated by the package's own checks (as the command does before any work);
``python scripts/<name>.py`` arguments go through the script's own argument parser; other programs
must be ones the docs may name. Placeholders such as ``<run dir>`` stand for a path.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
DOC_PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts)

README_MAX_BYTES = 16 * 1024
PLACEHOLDER = "runs/placeholder"
# Programs a docs command may run besides python and torchrun, checked no further.
OTHER_PROGRAMS = {"tensorboard", "ruff", "mkdocs", "pytest", "git"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```bash[ \t]*\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
_PLACEHOLDER = re.compile(r"<[^<>\n]+>")


class Command(NamedTuple):
    """One simple command of a docs code block: its words and the variables set before it."""

    source: str  # "README.md:12" style location, for failure messages
    words: list[str]
    env: dict[str, str]
    checked: bool  # False after `git checkout <commit>`: the command is for that commit's code


def bash_blocks(text: str) -> Iterator[tuple[int, str]]:
    """``(first line number, body)`` of every fenced bash block, indented ones (in lists) included."""
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start("body")) + 1
        indent = len(match["indent"])
        body = "\n".join(row[indent:] for row in match["body"].splitlines())
        yield line, body


def commands(path: Path) -> list[Command]:
    """Every simple command (split at ``&&``) of every bash block of ``path``."""
    out = []
    for first_line, body in bash_blocks(path.read_text()):
        variables: dict[str, str] = {}
        logical = body.replace("\\\n", " ")
        for offset, line in enumerate(logical.splitlines()):
            line = _PLACEHOLDER.sub(PLACEHOLDER, line)
            for name, value in variables.items():
                line = line.replace(f"${{{name}}}", value).replace(f"${name}", value)
            words = shlex.split(line, comments=True)
            if not words:
                continue
            name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            source = f"{name}:{first_line + offset}"
            if len(words) == 1 and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
                name, _, value = words[0].partition("=")
                variables[name] = value
                continue
            checked = True
            part: list[str] = []
            for word in [*words, "&&"]:
                if word != "&&":
                    part.append(word)
                    continue
                env = {}
                while part and re.fullmatch(r"[A-Za-z_]\w*=\S*", part[0]):
                    name, _, value = part.pop(0).partition("=")
                    env[name] = value
                if part and part[0] == "time":
                    part.pop(0)
                if part[:2] == ["taskset", "-c"] and len(part) > 3:  # the cores it may use, then the command
                    part = part[3:]
                out.append(Command(source, part, env, checked))
                if part[:2] == ["git", "checkout"]:
                    checked = False
                part = []
    return out


def _with_pythonpath(env: dict[str, str]) -> list[str]:
    return [str(ROOT / p) for p in env.get("PYTHONPATH", "").split(":") if p]


def check_train(overrides: list[str], pythonpath: list[str]) -> None:
    """What ``python -m mlsh.train`` checks before any work: composition, types and values, the env."""
    from mlsh.cli import compose_config, split_overrides
    from mlsh.config import config_from_dict
    from mlsh.envs import make_env

    data = compose_config("train", split_overrides(overrides))
    data.pop("resume", None)
    cfg = config_from_dict(data)
    key = repr(cfg.env)
    if key not in _ENVS_MADE:
        sys.path[:0] = pythonpath
        try:
            make_env(cfg.env).close()
        finally:
            del sys.path[: len(pythonpath)]
        _ENVS_MADE.add(key)


_ENVS_MADE: set[str] = set()


def check_run_reader(config_name: str, overrides: list[str]) -> None:
    """What ``python -m mlsh.evaluate`` / ``mlsh.inspect`` check before loading the run."""
    from mlsh.cli import compose_config, info_request, split_overrides
    from mlsh.config import Config, config_from_dict, replace_section
    from mlsh.evaluation import BASELINES, SPLITS, master_overrides

    data = compose_config(config_name, split_overrides(overrides))
    if info_request(overrides) is not None:  # --help, --cfg: the settings are printed, nothing is read
        return
    assert data["checkpoint"] not in (None, "???"), "checkpoint=<run dir> is required"
    replace_section(Config(), "master", master_overrides(data["master"]))
    if config_name == "evaluate":
        assert isinstance(data["baselines"], list), f"baselines must be a list, got {data['baselines']!r}"
        unknown = set(data["baselines"]) - set(BASELINES)
        assert not unknown, f"unknown baselines {unknown}"
        assert data["split"] in SPLITS, f"unknown split {data['split']!r}"
        assert isinstance(data["deterministic"], bool)
        if data.get("env"):
            config_from_dict({"env": data["env"]})


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def parse_script_args(script: Path, args: list[str]) -> argparse.Namespace:
    """The script's own parser applied to ``args``, stopping before the script does any work."""
    spec = importlib.util.spec_from_file_location(f"_docs_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *a: Any, **k: Any) -> argparse.Namespace:
        raise _Parsed(original(self, *a, **k))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        patch.setattr(sys, "argv", [str(script), *args])
        try:
            module.main()
        except _Parsed as parsed:
            return parsed.namespace
        except SystemExit as exc:
            raise AssertionError(f"{script.name} refuses the arguments {args} (exit {exc.code})") from None
    raise AssertionError(f"{script.name} has no argparse parser to check its arguments against")


def check_script(script: Path, args: list[str], pythonpath: list[str]) -> None:
    assert script.is_file(), f"{script.relative_to(ROOT)} does not exist"
    namespace = parse_script_args(script, args)
    sets = getattr(namespace, "set", None) or getattr(namespace, "sets", None) or []
    if script.name in ("seeds_table.py", "benchmark_train.py"):  # training overrides for every run
        check_train([f"env={namespace.env}", *sets], pythonpath)
    elif script.name == "sweep_master.py":  # master settings, as master.<key>= in mlsh.inspect
        from mlsh.config import Config, replace_section

        for text in sets:
            settings = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in text.split())}
            replace_section(Config(), "master", settings)


def check_python(words: list[str], pythonpath: list[str]) -> None:
    if words[1:3] == ["-m", "pytest"]:
        return
    if words[1] == "-c":
        compile(words[2], "<docs python -c>", "exec")
        return
    if words[1] == "-m":
        module, args = words[2], words[3:]
        if module == "mlsh.train":
            check_train(args, pythonpath)
        elif module in ("mlsh.evaluate", "mlsh.inspect"):
            check_run_reader(module.split(".")[1], args)
        else:
            raise AssertionError(f"unexpected module {module}; teach tests/test_docs.py to check it")
        return
    check_script(ROOT / words[1], words[2:], pythonpath)


def check_pip(words: list[str]) -> None:
    assert words[:2] == ["pip", "install"], words
    for word in words[2:]:
        match = re.fullmatch(r"\.\[([\w,]+)\]", word)
        if match:
            missing = set(match[1].split(",")) - _pyproject_extras()
            assert not missing, f"pyproject.toml declares no extra {missing}"


def _pyproject_extras() -> set[str]:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"].get("optional-dependencies", {}))


def check_command(command: Command) -> None:
    words, pythonpath = command.words, _with_pythonpath(command.env)
    program = words[0]
    if not command.checked or program in OTHER_PROGRAMS:
        return
    if program == "python":
        check_python(words, pythonpath)
    elif program == "torchrun":
        assert "-m" in words, "torchrun runs a module: torchrun [options] -m mlsh.train ..."
        at = words.index("-m")
        check_python(["python", *words[at:]], pythonpath)
    elif program == "pip":
        check_pip(words)
    elif program == "bash":
        assert (ROOT / words[1]).is_file(), f"{words[1]} does not exist"
    else:
        raise AssertionError(f"unexpected program {program!r}; teach tests/test_docs.py to check it")


ALL_COMMANDS = [command for path in [README, *DOC_PAGES] for command in commands(path)]


def test_the_docs_show_commands() -> None:
    sources = {c.source.split(":")[0] for c in ALL_COMMANDS}
    assert "README.md" in sources
    assert sum(1 for c in ALL_COMMANDS if c.words[:3] == ["python", "-m", "mlsh.train"]) >= 10


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[f"{c.source} {' '.join(c.words)[:60]}" for c in ALL_COMMANDS])
def test_command_is_valid(command: Command) -> None:
    try:
        check_command(command)
    except Exception as exc:  # the failure names the page and line
        raise AssertionError(f"{command.source}: `{shlex.join(command.words)}`: {exc}") from exc


def test_a_wrong_override_is_caught() -> None:
    """The checks can fail: a misspelt key, an impossible value, a missing checkpoint."""
    from mlsh.errors import ConfigError

    with pytest.raises(ConfigError, match="mlsh.macro_lenn"):
        check_command(Command("t", ["python", "-m", "mlsh.train", "mlsh.macro_lenn=5"], {}, True))
    with pytest.raises(ConfigError, match="multiple of mlsh.macro_len"):
        check_command(Command("t", ["python", "-m", "mlsh.train", "mlsh.macro_len=7"], {}, True))
    with pytest.raises(AssertionError, match="checkpoint"):
        check_command(Command("t", ["python", "-m", "mlsh.evaluate", "num_tasks=3"], {}, True))
    with pytest.raises(AssertionError, match="unknown baselines"):
        check_command(Command("t", ["python", "-m", "mlsh.evaluate", "checkpoint=x", "baselines=[sratch]"], {}, True))
    with pytest.raises(AssertionError, match="refuses"):
        check_command(Command("t", ["python", "scripts/seeds_table.py", "--sedes", "0"], {}, True))


def test_placeholders_and_variables_are_substituted(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n- item\n\n  ```bash\n  R=runs/x\n  python -m mlsh.evaluate checkpoint=<run dir> \\\n"
        "      output=$R/e.json   # a comment\n  git checkout abc && python scripts/old.py --gone\n  ```\n"
    )
    first, second, third = commands(page)
    assert first.words == ["python", "-m", "mlsh.evaluate", f"checkpoint={PLACEHOLDER}", "output=runs/x/e.json"]
    assert second.words == ["git", "checkout", "abc"] and second.checked
    assert third.words == ["python", "scripts/old.py", "--gone"] and not third.checked


def _ci_command() -> str:
    """The command `.ci/run` runs: its line that starts with `pip install`, without the status capture."""
    lines = [line for line in CI_RUN.read_text().splitlines() if line.startswith("pip install")]
    assert len(lines) == 1, "expected one `pip install ... && ...` line in .ci/run"
    return lines[0].split(" || status=$?")[0].strip()


def test_readme_top_commands_are_install_and_train_then_ci() -> None:
    first_block = next(bash_blocks(README.read_text()))[1].splitlines()
    assert first_block[0] == 'pip install "torch==2.13.0" -e . && python -m mlsh.train'
    assert first_block[1] == _ci_command(), "README's second command must be .ci/run's, byte for byte"


def test_readme_is_a_front_page() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/ (limit {README_MAX_BYTES})"


def test_readme_links_and_images_exist() -> None:
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)|src=\"([^\"]+)\"", README.read_text()):
        path = next(t for t in target if t)
        if "://" in path:
            continue
        assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"


def test_settings_page_lists_every_setting() -> None:
    """The settings page's generated tables cover every field of the run's dataclasses, each with a meaning."""
    import dataclasses

    from mlsh.config import Config

    spec = importlib.util.spec_from_file_location("_docs_settings_hook", ROOT / "docs" / "hooks" / "settings.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = hook.render((ROOT / "docs" / "usage" / "settings.md").read_text())
    assert "<!-- mlsh:" not in page
    cfg = Config()
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(value):
            assert f"| `{section.name}` |" in page
            continue
        for f in dataclasses.fields(value):
            key = f.name if section.name in ("master", "sub") else f"{section.name}.{f.name}"
            row = next((line for line in page.splitlines() if line.startswith(f"| `{key}` |")), None)
            assert row is not None, f"{key} is missing from the settings page"
            assert row.rstrip(" |").split("|")[-1].strip(), f"{key} has no meaning on the settings page"
