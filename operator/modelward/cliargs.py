"""The conventions every ``modelward`` subcommand shares, as kubectl users expect them.

One place for them so that a command added later cannot drift: ``-o/--output`` with
``text|json|yaml`` (structured output rendered by :func:`render_structured`), ``-f -`` meaning
standard input (:data:`STDIN`), ``--kubeconfig`` / ``--context`` / ``-n`` for commands that talk
to a cluster (:func:`add_cluster_arguments`), and help that shows defaults and examples
(:class:`HelpFormatter`, used by every parser made through :class:`CommandParser`).

How a new command plugs in (see docs/cli.md): write ``register(subparsers)`` in its own
module, call ``subparsers.add_parser(name, help=..., description=..., epilog=EXAMPLES)``,
use the helpers below for the shared flags, set ``handler`` to a function returning the exit
code (:data:`EXIT_OK`, :data:`EXIT_FAILED`, :data:`EXIT_UNUSABLE`), and call ``register`` from
``modelward.cli.build_parser``. Raise a ``ModelwardError`` for unusable input: ``cli.main``
turns it into one line on stderr and exit 2.

Pure: argparse, json and yaml only, so the integrity commands (a lower layer) can use it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import yaml

#: The exit-code contract of every command.
EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
#: A file argument of ``-`` means standard input (``-f -``), as in kubectl.
STDIN = "-"
#: The structured formats every command offers next to its human-readable default.
STRUCTURED = ("json", "yaml")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs (the examples) kept as written, one-paragraph descriptions wrapped, and every
    meaningful default shown after its option's help, as ``kubectl`` does; ``None``, ``False``
    and empty lists are not defaults worth printing ("(default: None)" says nothing)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:  # laid out by hand: examples, exit-code tables
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default in (None, False, argparse.SUPPRESS)
            or (isinstance(default, list | tuple) and not default)
            or not action.option_strings
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help uses :class:`HelpFormatter` unless told otherwise;
    ``add_subparsers`` hands it down, so subcommands registered elsewhere get it too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_output_argument(
    parser: argparse.ArgumentParser,
    *,
    choices: Sequence[str] = ("text", *STRUCTURED),
    default: str = "text",
    help: str = "",
) -> None:
    """``-o/--output FORMAT``; ``help`` says what the command's own formats are."""
    parser.add_argument(
        "-o",
        "--output",
        choices=tuple(choices),
        default=default,
        metavar="FORMAT",
        help=f"output format: {', '.join(choices)}" + (f"; {help}" if help else ""),
    )


def add_cluster_arguments(
    parser: argparse.ArgumentParser, *, namespace_help: str | None = "namespace"
) -> None:
    """``--kubeconfig``, ``--context`` and ``-n/--namespace``, read by
    ``modelward.controller.kubeconfig.load_api_client``."""
    group = parser.add_argument_group("cluster (as kubectl)")
    group.add_argument(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config; the in-cluster "
        "service account when run in a pod)",
    )
    group.add_argument(
        "--context",
        default=None,
        metavar="NAME",
        help="kubeconfig context to use (default: its current-context)",
    )
    if namespace_help is not None:  # None: the command reads every namespace
        group.add_argument("-n", "--namespace", default=None, metavar="NAME", help=namespace_help)


def render_structured(data: Any, output: str) -> str:
    """``data`` (JSON-compatible) as ``json`` (indented) or ``yaml`` (block style, keys in
    the order given, so both read alike)."""
    if output == "json":
        return json.dumps(data, indent=2)
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    raise ValueError(f"not a structured output format: {output!r}")
