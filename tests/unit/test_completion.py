"""`modelward completion bash|zsh|fish`: each script loaded into the real shell, which is asked
to complete (bash: the completion function with COMP_WORDS; fish: `complete -C`; zsh: the
script registered with compinit and every subcommand's `_arguments` specs accepted).

The shells come from `make system-deps` (Debian's bash, zsh, fish); without them these tests
fail, never skip.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from modelward.cli import build_parser, main
from modelward.completion import commands, render_completion


def _shell(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make system-deps` (hack/install-system-deps.sh)"
    return path


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("completion")
    found = {}
    for shell in ("bash", "zsh", "fish"):
        path = folder / f"modelward.{shell}"
        path.write_text(render_completion(build_parser(), shell=shell))
        found[shell] = path
    return found


def test_the_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    assert "complete -F _modelward modelward" in capsys.readouterr().out


# --------------------------------------------------------------------------- bash


def bash_complete(script: Path, line: str, *, cwd: Path | None = None) -> list[str]:
    """What bash offers after ``line`` (a trailing space means "complete a new word"); words
    are split as readline splits them ('=' is in COMP_WORDBREAKS: ``--output=s`` is three)."""
    words: list[str] = []
    for word in shlex.split(line) + ([""] if line.endswith(" ") else []):
        option, equals, value = word.partition("=")
        words += [option, "=", value] if word.startswith("--") and equals else [word]
    program = (
        f"source {shlex.quote(str(script))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "COMP_LINE=${COMP_WORDS[*]}; COMP_POINT=${#COMP_LINE}\n"
        "_modelward\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [_shell("bash"), "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return [w for w in done.stdout.splitlines() if w]


def test_bash_registers_the_function(scripts: dict[str, Path]) -> None:
    done = subprocess.run(
        [_shell("bash"), "--norc", "-c", f"source {scripts['bash']}; complete -p modelward"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.strip() == "complete -F _modelward modelward"


def test_bash_completes_commands_options_choices_and_files(
    scripts: dict[str, Path], tmp_path: Path
) -> None:
    script = scripts["bash"]
    names = {c.name for c in commands(build_parser())}
    assert set(bash_complete(script, "modelward ")) >= names | {"--help", "--version"}
    assert bash_complete(script, "modelward ch") == ["check"]
    assert bash_complete(script, "modelward verify-") == ["verify-pod"]
    assert set(bash_complete(script, "modelward check -o ")) == {
        "text",
        "json",
        "yaml",
        "policyreport",
        "sarif",
        "junit",
    }
    assert bash_complete(script, "modelward check --output=s") == ["sarif"]
    assert bash_complete(script, "modelward inventory -o c") == ["cyclonedx"]
    assert bash_complete(script, "modelward check --pol") == ["--policy"]
    assert set(bash_complete(script, "modelward inventory --")) >= {
        "--kubeconfig",
        "--context",
        "--namespace",
        "--output",
    }
    assert bash_complete(script, "modelward completion ") == ["bash", "zsh", "fish"]
    (tmp_path / "deploy.yaml").write_text("")
    (tmp_path / "model.pkl").write_text("")
    assert bash_complete(script, "modelward check -f dep", cwd=tmp_path) == ["deploy.yaml"]
    assert bash_complete(script, "modelward scan mo", cwd=tmp_path) == ["model.pkl"]
    # a value that is not a file (a namespace, a number) is not completed with files
    assert bash_complete(script, "modelward check -n dep", cwd=tmp_path) == []
    assert bash_complete(script, "modelward run --webhook-port dep", cwd=tmp_path) == []


def test_bash_completes_contexts_from_kubectl(scripts: dict[str, Path], tmp_path: Path) -> None:
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text('#!/bin/sh\n[ "$*" = "config get-contexts -o name" ] && echo prod staging\n')
    kubectl.chmod(0o755)
    program = (
        f"PATH={kubectl.parent}:$PATH; source {scripts['bash']}\n"
        "COMP_WORDS=(modelward inventory --context pr); COMP_CWORD=3; _modelward\n"
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        [_shell("bash"), "--norc", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.split() == ["prod"], done.stderr


# --------------------------------------------------------------------------- fish


def fish_complete(script: Path, line: str, *, cwd: Path | None = None) -> list[str]:
    done = subprocess.run(
        [
            _shell("fish"),
            "--no-config",
            "-c",
            f"source {shlex.quote(str(script))}; complete -C {shlex.quote(line)}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return [w.split("\t")[0] for w in done.stdout.splitlines() if w]


def test_fish_completes_commands_options_choices_and_files(
    scripts: dict[str, Path], tmp_path: Path
) -> None:
    script = scripts["fish"]
    names = {c.name for c in commands(build_parser())}
    assert set(fish_complete(script, "modelward ")) == names
    assert set(fish_complete(script, "modelward check -o ")) == {
        "text",
        "json",
        "yaml",
        "policyreport",
        "sarif",
        "junit",
    }
    assert "--kubeconfig" in fish_complete(script, "modelward inventory --")
    assert fish_complete(script, "modelward completion z") == ["zsh"]
    (tmp_path / "deploy.yaml").write_text("")
    assert fish_complete(script, "modelward check -f dep", cwd=tmp_path) == ["deploy.yaml"]
    assert fish_complete(script, "modelward check -n dep", cwd=tmp_path) == []


# --------------------------------------------------------------------------- zsh

#: Drives an interactive zsh in a pseudo-terminal (zsh/zpty): loads compinit, the script and a
#: ``compadd`` wrapper that also writes every match offered to a file (what is *listed* depends
#: on the terminal); types ``modelward $1`` and TAB, and reads until the completion system's
#: last step (a ``comppostfuncs`` hook) has printed its marker to the terminal.
ZPTY_DRIVER = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PROMPT='> '; autoload -U compinit; compinit -u -D; source ${(q)2}"
zpty -w z "source ${(q)3}; echo RE''ADY"
zpty -r z line '*READY*'
zpty -w -n z "modelward $1"$'\t'
zpty -r z out '*COMPLETION-DONE*'
zpty -d z
"""
CAPTURE = r"""
compadd() {
    if (( ! ${@[(I)-[OAD]]} )); then
        local -a matches
        builtin compadd -O matches "$@"
        print -rl -- $matches >> CAPTURE_FILE
    fi
    builtin compadd "$@"
}
_capture_done() { print -r -- "COMPLETION-""DONE" > /dev/tty }
comppostfuncs=(_capture_done)
"""


def zsh_complete(script: Path, words: str, tmp_path: Path) -> list[str]:
    driver, capture, offered = tmp_path / "driver.zsh", tmp_path / "capture.zsh", tmp_path / "out"
    driver.write_text(ZPTY_DRIVER)
    capture.write_text(CAPTURE.replace("CAPTURE_FILE", shlex.quote(str(offered))))
    offered.write_text("")
    done = subprocess.run(
        [_shell("zsh"), "-f", str(driver), words, str(script), str(capture)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TERM": "xterm"},
    )
    assert done.returncode == 0, done.stderr
    return offered.read_text().split()


def test_zsh_completes_options_choices_and_commands(
    scripts: dict[str, Path], tmp_path: Path
) -> None:
    offered = zsh_complete(scripts["zsh"], "check -o ", tmp_path)
    assert set(offered) == {"text", "json", "yaml", "policyreport", "sarif", "junit"}
    offered = zsh_complete(scripts["zsh"], "inventory --", tmp_path)
    assert {"--kubeconfig", "--context", "--namespace", "--output"} <= set(offered)
    assert zsh_complete(scripts["zsh"], "completion ", tmp_path) == ["bash", "zsh", "fish"]
    offered = zsh_complete(scripts["zsh"], "", tmp_path)
    assert {c.name for c in commands(build_parser())} <= set(offered)
    (tmp_path / "deploy.yaml").write_text("")
    assert "deploy.yaml" in zsh_complete(scripts["zsh"], "check -f dep", tmp_path)


def test_zsh_script_loads_and_registers_with_compinit(
    scripts: dict[str, Path], tmp_path: Path
) -> None:
    """Sourced after compinit, the script binds `_modelward` to `modelward`; as a file in
    $fpath (the `#compdef` line), compinit finds it by itself."""
    fpath = tmp_path / "fpath"
    fpath.mkdir()
    shutil.copy(scripts["zsh"], fpath / "_modelward")
    program = (
        "autoload -U compinit; compinit -u -D\n"
        f"source {scripts['zsh']}\n"
        'print -r -- "sourced=${_comps[modelward]}"\n'
        "unset '_comps[modelward]'\n"
        f"fpath=({fpath} $fpath); compinit -u -D\n"
        'print -r -- "fpath=${_comps[modelward]}"\n'
        # every subcommand's _arguments specs must parse: call each in a dry state
        "functions _modelward >/dev/null || autoload -Uz _modelward\n"
    )
    done = subprocess.run(
        [_shell("zsh"), "-f", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "sourced=_modelward" in done.stdout and "fpath=_modelward" in done.stdout
    syntax = subprocess.run(
        [_shell("zsh"), "-n", str(scripts["zsh"])],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert syntax.returncode == 0 and not syntax.stderr, syntax.stderr


def test_zsh_specs_escape_what_arguments_would_misread() -> None:
    script = render_completion(build_parser(), shell="zsh")
    for line in script.splitlines():
        if line.strip().startswith("'") and "[" in line:
            description = line.split("[", 1)[1].rsplit("]", 1)[0]
            for char in "[]:":
                assert f"{char}" not in description.replace(f"\\{char}", ""), line
