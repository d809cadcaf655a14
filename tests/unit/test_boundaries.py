"""The architecture, checked on the source text (DESIGN.md §2-§3): who may start processes, open SSH
connections, import typer, or touch the environment and the clock."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "taoremote"
MODULES = sorted(PACKAGE.rglob("*.py"))
PURE_MODULES = (
    "command.py",
    "known_hosts.py",
    "probe.py",
    "nvidia_smi.py",
    "cuda_table.py",
    "nvidia_require.py",
    "preflight.py",
    "output.py",
    "gpus.py",
    "specs.py",
    "trials.py",
    "progress.py",
    "slurm_script.py",
    "slurm_queue.py",
    "slurm_commands.py",
    "list_rows.py",
    "docker_errors.py",
    "placement.py",
    "request.py",
    "plan.py",
    "envs.py",
    "config_checks.py",
    "containers.py",
    "interrupts.py",
    "backend.py",
    "trailer.py",
    "sweep.py",
    "sweep_poll.py",
    "sweep_slurm_poll.py",
    "sweep_view.py",
)
# A seeded generator is a pure function of its seed: trials.py may import `random.Random`, nothing else of it
SEEDED_RANDOM = {"trials.py": {"random", "random.Random"}}
# taoremote modules that do I/O, start processes or hold the CLI: a pure module may not import them
IMPURE_TAOREMOTE = (
    "hosts",
    "jobs",
    "docker_launch",
    "launch",
    "actions",
    "run",
    "info",
    "cli",
    "cli_shared",
    "cli_sweep",
    "doctor",
    "slurm",
    "slurm_login",
    "slurm_submit",
    "fleet",
    "sweep_run",
    "sweep_launch",
    "__main__",
)


def _source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in the file (deferred imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(_source(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _importers(top_level: str) -> list[str]:
    return [
        p.name
        for p in MODULES
        if any(n == top_level or n.startswith(f"{top_level}.") for n in _imported_modules(p))
    ]


def test_the_package_has_the_modules_these_checks_are_about() -> None:
    names = {p.name for p in MODULES}
    assert {"hosts.py", "cli.py", *PURE_MODULES} <= names


def test_only_hosts_py_starts_processes() -> None:
    assert _importers("subprocess") == ["hosts.py"]


# the executor (commands over the link), the link (connection, keepalives), host-key trust / connect failures
SSH_MODULES = {"ssh.py", "ssh_link.py", "ssh_trust.py"}


def test_only_the_ssh_modules_import_ssh_libraries() -> None:
    assert set(_importers("paramiko")) == SSH_MODULES
    assert set(_importers("fabric")) <= SSH_MODULES


def test_ssh_py_is_imported_only_lazily_by_hosts_py() -> None:
    # `--help` and local runs must never pay for fabric/paramiko: outside the SSH modules themselves,
    # nobody imports them at module level
    for path in (p for p in MODULES if p.name not in SSH_MODULES):
        tree = ast.parse(_source(path))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in top for a in n.names} | {
            n.module for n in top if isinstance(n, ast.ImportFrom) and n.module
        }
        assert not {"taoremote.ssh", "taoremote.ssh_link", "taoremote.ssh_trust"} & names, path.name
    assert "hosts.py" in _importers("taoremote.ssh")


TYPER_MODULES = {"cli.py", "cli_shared.py", "cli_sweep.py"}


def test_only_the_cli_modules_import_typer() -> None:
    assert set(_importers("typer")) == TYPER_MODULES


def test_no_module_imports_click_directly() -> None:
    assert _importers("click") == []


def test_the_import_regexes_agree_with_the_syntax_tree() -> None:
    # a second opinion that also sees imports the ast walk could miss (e.g. inside exec'd strings)
    pattern = re.compile(r"^\s*(?:import|from)\s+(subprocess|fabric|paramiko|typer)\b", re.M)
    found = {(p.name, m.group(1)) for p in MODULES for m in pattern.finditer(_source(p))}
    assert {name for name, lib in found if lib == "subprocess"} <= {"hosts.py"}
    assert {name for name, lib in found if lib in ("fabric", "paramiko")} <= SSH_MODULES
    assert {name for name, lib in found if lib == "typer"} == TYPER_MODULES


# ---------------------------------------------------------------------------------------------- pure modules

IMPURE_STDLIB = (
    "os",
    "subprocess",
    "shutil",
    "time",
    "datetime",
    "socket",
    "getpass",
    "secrets",
    "random",
    "uuid",
    "signal",
    "threading",
    "fabric",
    "paramiko",
    "typer",
)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_nothing_impure(module: str) -> None:
    imported = _imported_modules(PACKAGE / module) - SEEDED_RANDOM.get(module, set())
    bad = sorted(n for n in imported if n.split(".")[0] in IMPURE_STDLIB)
    assert bad == []
    internal = sorted(
        n for n in imported if n.startswith("taoremote.") and n.split(".")[1] in IMPURE_TAOREMOTE
    )
    assert internal == []


@pytest.mark.parametrize("module", sorted(SEEDED_RANDOM))
def test_seeded_random_is_only_ever_built_from_a_seed(module: str) -> None:
    # `Random()` with no argument seeds itself from the OS: that would be impure after all
    calls = [
        node
        for node in ast.walk(ast.parse(_source(PACKAGE / module)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Random"
    ]
    assert calls
    assert all(len(call.args) == 1 and not call.keywords for call in calls)
    assert "random." not in _source(PACKAGE / module).replace("random.Random", "")


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_reads_no_environment_clock_or_path(module: str) -> None:
    source = _source(PACKAGE / module)
    code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())  # comments may mention them
    for pattern in (
        r"\bos\.environ\b",
        r"\bgetenv\s*\(",
        r"\bshutil\.which\b",
        r"\btime\.(time|monotonic|perf_counter)\s*\(",
        r"\bdatetime\.(now|utcnow|today)\s*\(",
        r"\bdate\.today\s*\(",
        r"\bsubprocess\.",
        r"\bos\.(getcwd|getuid|getgid|path\.expanduser)\b",
        r"\bPath\.(home|cwd)\s*\(",
        r"\bisatty\s*\(",
    ):
        assert re.search(pattern, code) is None, f"{module}: {pattern}"


# ---------------------------------------------------------------------------------------------- calls


def test_no_module_passes_shell_true() -> None:
    offenders = [p.name for p in MODULES if re.search(r"\bshell\s*=\s*True\b", _source(p))]
    assert offenders == []
    for path in MODULES:
        for node in ast.walk(ast.parse(_source(path))):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    assert not (kw.arg == "shell" and not _is_false(kw.value)), f"{path.name}:{node.lineno}"


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _fabric_calls(tree: ast.AST) -> list[ast.Call]:
    """`.run(` / `.sudo(` calls on anything but the subprocess module: in ssh.py those go to fabric."""
    calls = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("run", "sudo")
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess")
        ):
            calls.append(node)
    return calls


def test_fabric_run_is_never_given_env() -> None:
    # invoke/fabric turn env= into an unescaped `export K=V` line in the remote command
    calls = [(m, c) for m in sorted(SSH_MODULES) for c in _fabric_calls(ast.parse(_source(PACKAGE / m)))]
    assert len(calls) >= 2  # run_visible and stream go through fabric
    for module, call in calls:
        assert "env" not in {kw.arg for kw in call.keywords}, f"{module}:{call.lineno}"
        assert None not in {kw.arg for kw in call.keywords}, f"{module}:{call.lineno}: **kwargs hide env="


def test_fabric_run_calls_found_by_text_have_no_env_argument() -> None:
    # the same rule, read off the text of each `_conn.run(...)` call up to its closing parenthesis
    source = "\n".join(_source(PACKAGE / m) for m in sorted(SSH_MODULES))
    starts = [m.end() for m in re.finditer(r"\._conn\.(?:run|sudo)\(", source)]
    assert starts
    for start in starts:
        depth, end = 1, start
        while depth:
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        assert not re.search(r"\benv\s*=", source[start:end]), source[start:end]


def test_no_module_uses_fabrics_inline_ssh_env() -> None:
    assert [p.name for p in MODULES if "inline_ssh_env" in _source(p)] == []
