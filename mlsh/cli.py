"""Shared command-line plumbing: config location, override checks, one-sentence errors."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mlsh.errors import ConfigError, MLSHError

if TYPE_CHECKING:
    from mlsh.config import Config


def config_dir() -> Path:
    """``configs/`` of the source tree (editable installs), else the copy installed as ``mlsh/configs``."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError("mlsh's configs/ directory is missing from the installation; reinstall mlsh.")


def register_defaults() -> None:
    """Puts the library's defaults in Hydra's ``ConfigStore``, where the yaml files take them from:
    ``mlsh_defaults``, every setting of a run as :mod:`mlsh.config`'s dataclasses define it, and
    ``adapt_master``, every key of a master section set to null (keep the run's). The yaml files then hold only
    what differs. Idempotent; :func:`compose_job` and ``mlsh.train`` call it."""
    from hydra.core.config_store import ConfigStore

    from mlsh.config import Config

    store = ConfigStore.instance()
    defaults = Config().to_dict()
    store.store(name="mlsh_defaults", node=defaults)
    store.store(name="adapt_master", node=dict.fromkeys(defaults["master"]))


def available_choices(group: str) -> list[str]:
    """Names selectable with ``<group>=<Name>`` (``configs/<group>/<Name>.yaml``)."""
    return sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))


def fail(message: str, code: int = 2) -> NoReturn:
    """Prints ``error: message`` on stderr and exits (no traceback for user mistakes)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def split_overrides(argv: list[str]) -> list[str]:
    """The ``key=value`` overrides in ``argv``, read with Hydra's own argument parser (its flags, such as
    ``--cfg job`` or ``--multirun``, are left to Hydra), refusing anything else with a sentence.

    Raises:
        ConfigError: an override without ``=``, or a flag or flag value Hydra does not know.
    """
    import argparse

    # Hydra keeps its parser in a private module; it is the parser @hydra.main reads sys.argv with.
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.exit_on_error = False
    try:
        parsed, unknown = parser.parse_known_intermixed_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(f"{exc}; `--help` lists the flags Hydra takes.") from exc
    flags = [arg for arg in unknown if arg.startswith("-")]
    if flags:
        raise ConfigError(f"Unknown flag '{flags[0]}'; `--help` lists the flags Hydra takes.")
    for arg in [*parsed.overrides, *unknown]:
        if "=" not in arg or arg.startswith("="):
            raise ConfigError(f"Malformed override '{arg}': write key=value, e.g. seed=3 or mlsh.macro_len=10.")
    return [*parsed.overrides, *unknown]


def info_request(argv: list[str]) -> str | None:
    """``"help"`` for ``--help`` / ``-h``, ``"cfg"`` for ``--cfg <part>`` / ``-c <part>``, else None: for the
    commands that read a run, which answer them themselves (Hydra does for ``mlsh.train``)."""
    from hydra._internal.utils import get_args_parser

    parsed, _ = get_args_parser().parse_known_intermixed_args(argv)
    if parsed.help:
        return "help"
    return "cfg" if parsed.cfg else None


def override_value(overrides: list[str], key: str) -> str | None:
    """Value of the last ``key=value`` (also ``+key=`` / ``++key=``) in ``overrides``."""
    value = None
    for item in overrides:
        name, _, rest = item.partition("=")
        if name.lstrip("+") == key:
            value = rest
    return value


def compose_config(config_name: str, overrides: list[str]) -> dict[str, Any]:
    """Composes the job's config like ``@hydra.main`` would (without the ``hydra`` section), mapping
    Hydra's errors to one sentence."""
    return compose_job(config_name, overrides)[0]


def training_job(overrides: list[str]) -> tuple[Config, Path]:
    """The settings ``python -m mlsh.train <overrides>`` would start a fresh run with (``resume`` dropped),
    validated, and the run dir Hydra would create for them (:func:`compose_job`)."""
    from mlsh.config import config_from_dict

    data, run_dir = compose_job("train", overrides)
    data.pop("resume", None)
    return config_from_dict(data), run_dir


def training_config(overrides: list[str]) -> Config:
    """:func:`training_job`'s settings: for scripts that train in-process with the command line's defaults."""
    return training_job(overrides)[0]


def compose_job(config_name: str, overrides: list[str]) -> tuple[dict[str, Any], Path]:
    """:func:`compose_config`'s settings, and the run dir Hydra would create for them (``hydra.run.dir``,
    resolved now: its timestamp), from one composition."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    hints = {"env": " (or keep one and set env.id=<your Gymnasium id>)", "algo": ""}
    for group, hint in hints.items():
        choice = override_value(overrides, group)
        if choice is not None and choice not in available_choices(group):
            raise ConfigError(f"Unknown {group} '{choice}'; available: {', '.join(available_choices(group))}{hint}.")
    register_defaults()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=config_name):
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)  # resolves ${hydra:...} in the run dir
            run_dir = Path(str(cfg.hydra.run.dir))
            with open_dict(cfg):
                del cfg["hydra"]  # Hydra's own settings (run dir, ...), not the job's
            data = OmegaConf.to_container(cfg, resolve=True)
            assert isinstance(data, dict)
            return data, run_dir  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Could not override" in first or "not in struct" in str(exc):
            key = first.split("'")[1] if "'" in first else first
            raise ConfigError(
                f"Unknown setting '{key}'; list the settings with `python -m mlsh.{config_name} --cfg job` "
                f"and check the spelling."
            ) from exc
        raise ConfigError(f"Invalid override ({first}); write key=value, e.g. seed=3.") from exc


def hydra_value(value: str | Path) -> str:
    """``value`` as the right-hand side of a Hydra override (quoted where Hydra's grammar needs it)."""
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./\-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_cli(main: Callable[[], Any]) -> None:
    """Runs ``main`` with one-sentence errors for user mistakes and an exit code for scripts: ``error: ...`` and
    exit 2 (or the error's own code) for an :class:`MLSHError`, a disk error in one line naming the file and the
    cause, and one line for Ctrl-C outside training (exit 130)."""
    from mlsh.checks import is_disk_error, storage_error

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # mlsh's own lines go to stderr as they are, also while Hydra's job logging owns the root logger.
    logger = logging.getLogger("mlsh")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous = (logger.propagate, logger.level)
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    try:
        main()
    except MLSHError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:
        if not is_disk_error(exc) or not exc.filename:
            raise
        fail(str(storage_error(exc, exc.filename, "file")))
    except KeyboardInterrupt:
        print("mlsh: interrupted; nothing more was written.", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = previous
