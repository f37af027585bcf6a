"""MkDocs hook: the settings tables of the docs, generated from the code rather than copied by hand.

A page marks where a table goes with an HTML comment, replaced at build time:

* ``<!-- mlsh:settings SECTION -->``: the keys of ``mlsh.train``'s section SECTION (``top``, ``env``,
  ``mlsh``, ``ppo``, ``train``) with their defaults and meaning, read from the dataclasses of
  ``mlsh/config.py`` (defaults from the classes themselves, meanings from the attribute docstrings);
* ``<!-- mlsh:env-defaults -->``: what each ``env=<Name>`` config (``configs/env/*.yaml``) changes,
  from Hydra's own composition of ``configs/train.yaml`` with it;
* ``<!-- mlsh:yaml FILE -->``: the keys of a config file (``configs/FILE``) with their values and
  their comments, e.g. ``evaluate.yaml`` for ``mlsh.evaluate``.

An unknown marker, or a setting without a docstring, fails the build.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG_SOURCE = ROOT / "mlsh" / "config.py"
CONFIGS = ROOT / "configs"
_MARKER = re.compile(r"<!-- mlsh:([a-z-]+)(?: ([\w./-]+))? -->")


class SettingsError(Exception):
    """A marker or a setting the hook cannot document; the build stops on it."""


def attribute_docstrings(source: Path = CONFIG_SOURCE) -> dict[str, dict[str, str]]:
    """``{class name: {field: docstring}}`` for every class of ``source`` (PEP 257 attribute docstrings)."""
    tree = ast.parse(source.read_text())
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        for stmt, following in zip(node.body, node.body[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(following.value.value.split())
        out[node.name] = docs
    return out


def fmt(value: Any) -> str:
    """A value as one writes it on the command line (YAML spelling)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: reST double backticks as code spans, pipes escaped, and ``<...>``
    outside code spans escaped (Markdown would take ``<run dir>`` for an HTML tag)."""
    text = re.sub(r":(?:class|func|meth|mod|attr):`~?([^`]+)`", r"`\1`", text)
    parts = text.replace("``", "`").split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _doc(docs: dict[str, str], cls: str, name: str) -> str:
    try:
        return _cell(docs[cls][name])
    except KeyError:
        raise SettingsError(f"{cls}.{name} in mlsh/config.py has no docstring; add one under the field.") from None


def section_table(section: str) -> str:
    """The keys of one section of the run's settings, as a Markdown table."""
    from mlsh.config import Config

    docs = attribute_docstrings()
    cfg = Config()
    if section == "ppo":
        rows = ["| key | `master` default | `sub` default | meaning |", "|---|---|---|---|"]
        master_names = {f.name for f in dataclasses.fields(cfg.master)}
        for f in dataclasses.fields(cfg.sub):  # the sub-policies' own settings (SubConfig) come last, master: -
            master = _code(fmt(getattr(cfg.master, f.name))) if f.name in master_names else "-"
            cls = "PPOConfig" if f.name in master_names else "SubConfig"
            sub = _code(fmt(getattr(cfg.sub, f.name)))
            rows.append(f"| `{f.name}` | {master} | {sub} | {_doc(docs, cls, f.name)} |")
        return "\n".join(rows)
    rows = ["| key | default | meaning |", "|---|---|---|"]
    if section == "top":
        for f in dataclasses.fields(cfg):
            if not dataclasses.is_dataclass(getattr(cfg, f.name)):
                rows.append(f"| `{f.name}` | {_code(fmt(getattr(cfg, f.name)))} | {_doc(docs, 'Config', f.name)} |")
        # `resume` belongs to the command line, not to a run's settings: its meaning is in train.yaml.
        resume = yaml_comments(CONFIGS / "train.yaml")["resume"]
        rows.append(f"| `resume` | `null` | {_cell(resume)} |")
        return "\n".join(rows)
    sections = {"env": "EnvConfig", "mlsh": "MLSHConfig", "train": "TrainConfig"}
    if section not in sections:
        raise SettingsError(f"unknown settings section '{section}'; use one of top, ppo, {', '.join(sections)}.")
    value = getattr(cfg, section)
    for f in dataclasses.fields(value):
        default = fmt(getattr(value, f.name))
        rows.append(f"| `{section}.{f.name}` | {_code(default)} | {_doc(docs, sections[section], f.name)} |")
    return "\n".join(rows)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "kwargs":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def env_defaults_table() -> str:
    """Every setting that some ``env=<Name>`` config gives a value other than the dataclass default."""
    from mlsh.cli import available_choices, compose_config
    from mlsh.config import Config

    base = _flatten(Config().to_dict())
    names = available_choices("env")
    composed = {}
    for name in names:
        data = compose_config("train", [f"env={name}"])
        data.pop("resume", None)
        composed[name] = _flatten(data)
    keys = [key for key in composed[names[0]] if any(composed[n].get(key) != base.get(key) for n in names)]
    rows = ["| key | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in keys:
        cells = []
        for name in names:
            value = composed[name].get(key)
            cells.append(f"**{fmt(value)}**" if value != base.get(key) else fmt(value))
        rows.append(f"| `{key}` | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


_YAML_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*)(?:#\s?(?P<comment>.*))?$")
_YAML_CONTINUATION = re.compile(r"^\s+#\s?(?P<comment>.*)$")


def yaml_comments(path: Path) -> dict[str, str]:
    """``{dotted key: comment}`` of a Hydra config: each key's inline comment and the comment lines
    indented under it."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last: str | None = None
    for line in path.read_text().splitlines():
        match = _YAML_KEY.match(line)
        if match:
            indent = len(match["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            key = ".".join([k for _, k in stack] + [match["key"]])
            out[key] = (match["comment"] or "").strip()
            stack.append((indent, match["key"]))
            last = key
            continue
        continuation = _YAML_CONTINUATION.match(line)
        if continuation and last is not None and out.get(last):
            out[last] += " " + continuation["comment"].strip()
        else:
            last = None
    return out


def yaml_table(name: str) -> str:
    """The keys of ``configs/<name>`` with their values and comments (``defaults`` left out)."""
    path = CONFIGS / name
    if not path.is_file():
        raise SettingsError(f"configs/{name} does not exist; fix the mlsh:yaml marker.")
    values = _flatten(yaml.safe_load(path.read_text()) or {})
    comments = yaml_comments(path)
    rows = ["| key | value | meaning |", "|---|---|---|"]
    for key, value in values.items():
        if key == "defaults" or key.startswith("hydra."):
            continue
        rows.append(f"| `{key}` | {_code(fmt(value))} | {_cell(comments.get(key, ''))} |")
    return "\n".join(rows)


def render(markdown: str) -> str:
    """``markdown`` with every ``<!-- mlsh:... -->`` marker replaced by its table."""

    def replace(match: re.Match[str]) -> str:
        kind, arg = match[1], match[2]
        if kind == "settings" and arg:
            return section_table(arg)
        if kind == "env-defaults":
            return env_defaults_table()
        if kind == "yaml" and arg:
            return yaml_table(arg)
        raise SettingsError(f"unknown marker '{match[0]}'; see docs/hooks/settings.py.")

    return _MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """MkDocs event: fills the markers of every page."""
    return render(markdown)
