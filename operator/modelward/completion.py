"""``modelward completion bash|zsh|fish``: shell completion scripts generated from the parser.

Written from the ``argparse`` parser itself, so a command or option added later completes
without anyone editing a script: subcommands, their options, the choices of ``-o`` and the like,
files for file arguments, and kubeconfig contexts (``kubectl config get-contexts``) for
``--context``. No dependency: the three scripts are small and tested in the real shells.

Pure: argparse only (the parser is handed in by ``cli``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

SHELLS = ("bash", "zsh", "fish")
#: Values that are files or folders: by metavar, by name (``dest``), or a ``*_file`` name.
_FILE_METAVARS = {"PEM", "SIG", "FILE", "PATH", "DIR", "MODEL_PATH"}
_FILE_DESTS = {"filename", "policy", "files", "paths", "model_path", "repo_root", "kubeconfig"}
_CONTEXTS = "kubectl config get-contexts -o name 2>/dev/null"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    help: str
    #: "flag" (no value), "choices", "files", "contexts" or "text" (a value, nothing to offer)
    kind: str
    choices: tuple[str, ...] = ()
    repeatable: bool = False


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: tuple[Option, ...]
    #: How positional arguments complete: "files", "choices" or "none".
    positional: str
    positional_choices: tuple[str, ...] = ()


def _value_kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "flag"
    if action.choices:
        return "choices"
    if action.dest == "context":
        return "contexts"
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar:
        return "files" if metavar in _FILE_METAVARS else "text"
    return "files" if action.dest in _FILE_DESTS or action.dest.endswith("_file") else "text"


def _help(action: argparse.Action) -> str:
    text = (action.help or "") if action.help is not argparse.SUPPRESS else ""
    first = re.split(r";|\. ", re.sub(r"\s*\([^)]*\)", "", text), maxsplit=1)[0]
    return " ".join(first.replace("%(default)s", "").split())


def commands(parser: argparse.ArgumentParser) -> tuple[Command, ...]:
    """The subcommands of ``parser``, in the order they were registered."""
    found = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: _help(choice) for choice in action._choices_actions}
        for name, sub in action.choices.items():
            options = []
            positional = "none"
            choices: tuple[str, ...] = ()
            for item in sub._actions:
                if item.option_strings:
                    kind = _value_kind(item)
                    options.append(
                        Option(
                            flags=tuple(item.option_strings),
                            help=_help(item),
                            kind=kind,
                            choices=tuple(str(c) for c in item.choices or ()),
                            repeatable=isinstance(item, argparse._AppendAction),
                        )
                    )
                elif item.choices:
                    positional, choices = "choices", tuple(str(c) for c in item.choices)
                elif _value_kind(item) == "files":
                    positional = "files"
            found.append(Command(name, helps.get(name, ""), tuple(options), positional, choices))
    return tuple(found)


def _top_options(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    return tuple(
        flag
        for action in parser._actions
        if action.option_strings
        for flag in action.option_strings
    )


def render_completion(parser: argparse.ArgumentParser, *, shell: str) -> str:
    """The completion script of ``parser``'s program for ``shell``."""
    prog = parser.prog
    cmds = commands(parser)
    if shell == "bash":
        return _bash(prog, cmds, _top_options(parser))
    if shell == "zsh":
        return _zsh(prog, cmds)
    if shell == "fish":
        return _fish(prog, cmds)
    raise ValueError(f"unknown shell {shell!r}: use one of {', '.join(SHELLS)}")


def _func(prog: str) -> str:
    return "_" + re.sub(r"\W", "_", prog)


# --------------------------------------------------------------------------- bash


def _bash_values(option: Option, func: str) -> str:
    if option.kind == "choices":
        return f'COMPREPLY=( $(compgen -W "{" ".join(option.choices)}" -- "$cur") )'
    if option.kind == "files":
        return f"{func}_files"
    if option.kind == "contexts":
        return f'COMPREPLY=( $(compgen -W "$({_CONTEXTS})" -- "$cur") )'
    return "COMPREPLY=()"


def _bash(prog: str, cmds: Sequence[Command], top: Sequence[str]) -> str:
    func = _func(prog)
    lines = [
        f"# {prog} completion for bash: source <({prog} completion bash)",
        f"{func}_files() {{",
        "    compopt -o filenames 2>/dev/null",
        '    COMPREPLY=( $(compgen -f -- "$cur") )',
        "}",
        f"{func}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" i',
        '    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    # --option=value: bash splits at '=', the option is the word before it",
        '    if [[ $cur == "=" ]]; then cur=""; fi',
        '    if [[ $prev == "=" && COMP_CWORD -gt 1 ]]; then',
        '        prev="${COMP_WORDS[COMP_CWORD-2]}"',
        "    fi",
        "    for (( i = 1; i < COMP_CWORD; i++ )); do",
        '        case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break ;; esac',
        "    done",
        "    if [[ -z $cmd ]]; then",
        f'        COMPREPLY=( $(compgen -W "{" ".join((*(c.name for c in cmds), *top))}" '
        '-- "$cur") )',
        "        return 0",
        "    fi",
        '    local opts=""',
        '    case "$cmd" in',
    ]
    for cmd in cmds:
        flags = " ".join(f for o in cmd.options for f in o.flags)
        lines.append(f"    {cmd.name})")
        lines.append(f'        opts="{flags}"')
        valued = [o for o in cmd.options if o.kind != "flag"]
        if valued:
            lines.append('        case "$prev" in')
            for option in valued:
                lines.append(
                    f"            {'|'.join(option.flags)}) {_bash_values(option, func)}; "
                    "return 0 ;;"
                )
            lines.append("        esac")
        lines.append("        if [[ $cur == -* ]]; then")
        lines.append('            COMPREPLY=( $(compgen -W "$opts" -- "$cur") ); return 0')
        lines.append("        fi")
        if cmd.positional == "files":
            lines.append(f"        {func}_files")
        elif cmd.positional == "choices":
            lines.append(
                f'        COMPREPLY=( $(compgen -W "{" ".join(cmd.positional_choices)}" '
                '-- "$cur") )'
            )
        lines.append("        ;;")
    lines += ["    esac", "    return 0", "}", f"complete -F {func} {prog}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- zsh


def _zsh_quote(text: str) -> str:
    """Inside a single-quoted ``_arguments`` spec: no quote, brackets or colons unescaped."""
    return text.replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")


def _zsh_action(option: Option) -> str:
    if option.kind == "choices":
        return f":value:({' '.join(option.choices)})"
    if option.kind == "files":
        return ":file:_files"
    if option.kind == "contexts":
        return ":context:_modelward_contexts"
    return ":value: "


def _zsh_specs(cmd: Command) -> Iterator[str]:
    for option in cmd.options:
        text = _zsh_quote(option.help)
        action = "" if option.kind == "flag" else _zsh_action(option)
        star = "*" if option.repeatable else ""
        if len(option.flags) > 1 and not option.repeatable:
            exclusive = f"({' '.join(option.flags)})"
            yield f"'{exclusive}'{{{','.join(option.flags)}}}'[{text}]{action}'"
        elif len(option.flags) > 1:
            yield f"'{star}'{{{','.join(option.flags)}}}'[{text}]{action}'"
        else:
            yield f"'{star}{option.flags[0]}[{text}]{action}'"
    if cmd.positional == "files":
        yield "'*:file:_files'"
    elif cmd.positional == "choices":
        yield f"':value:({' '.join(cmd.positional_choices)})'"


def _zsh(prog: str, cmds: Sequence[Command]) -> str:
    func = _func(prog)
    lines = [
        f"#compdef {prog}",
        f'# {prog} completion for zsh: {prog} completion zsh > "${{fpath[1]}}/_{prog}"',
        "_modelward_contexts() {",
        "    local -a contexts",
        f'    contexts=(${{(f)"$({_CONTEXTS})"}})',
        "    _describe -t contexts 'kubeconfig context' contexts",
        "}",
        f"{func}() {{",
        '    local curcontext="$curcontext" state line',
        "    typeset -A opt_args",
        "    local -a commands",
        "    commands=(",
    ]
    for cmd in cmds:
        lines.append(f"        '{cmd.name}:{_zsh_quote(cmd.help)}'")
    lines += [
        "    )",
        "    _arguments -C \\",
        "        '(- *)'{-h,--help}'[show help]' \\",
        "        '(- *)--version[show the version]' \\",
        "        '1: :->command' \\",
        "        '*:: :->args'",
        "    case $state in",
        "    command) _describe -t commands 'modelward command' commands ;;",
        "    args)",
        "        case $words[1] in",
    ]
    for cmd in cmds:
        specs = list(_zsh_specs(cmd))
        lines.append(f"        {cmd.name}) _arguments \\")
        lines.extend(f"            {spec} \\" for spec in specs[:-1])
        lines.append(f"            {specs[-1]} ;;" if specs else "            ;;")
    lines += ["        esac ;;", "    esac", "}", f'{func} "$@"']
    # `compdef` when sourced (`source <(modelward completion zsh)`); autoload uses #compdef.
    script = "\n".join(lines) + "\n"
    return script.replace(
        f'{func} "$@"',
        f'if [[ $funcstack[1] == {func} ]]; then {func} "$@"; else compdef {func} {prog}; fi',
    )


# --------------------------------------------------------------------------- fish


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(prog: str, cmds: Sequence[Command]) -> str:
    lines = [
        f"# {prog} completion for fish: {prog} completion fish > "
        f"~/.config/fish/completions/{prog}.fish",
        f"complete -c {prog} -f",
        f"complete -c {prog} -n '__fish_use_subcommand' -s h -l help -d 'show help'",
        f"complete -c {prog} -n '__fish_use_subcommand' -l version -d 'show the version'",
    ]
    for cmd in cmds:
        lines.append(
            f"complete -c {prog} -n '__fish_use_subcommand' -a {cmd.name} "
            f"-d {_fish_quote(cmd.help)}"
        )
    for cmd in cmds:
        when = f"-n '__fish_seen_subcommand_from {cmd.name}'"
        for option in cmd.options:
            parts = [f"complete -c {prog} {when}"]
            for flag in option.flags:
                parts.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
            if option.kind == "choices":
                parts.append(f"-x -a {_fish_quote(' '.join(option.choices))}")
            elif option.kind == "files":
                parts.append("-r -F")
            elif option.kind == "contexts":
                parts.append(f"-x -a '({_CONTEXTS})'")
            elif option.kind == "text":
                parts.append("-x")
            parts.append(f"-d {_fish_quote(option.help)}")
            lines.append(" ".join(parts))
        if cmd.positional == "files":
            lines.append(f"complete -c {prog} {when} -F")
        elif cmd.positional == "choices":
            lines.append(
                f"complete -c {prog} {when} -x -a {_fish_quote(' '.join(cmd.positional_choices))}"
            )
    return "\n".join(lines) + "\n"
