"""Mutation testing with mutmut, one module at a time (`make mutate`, `make mutate MODULE=auth`).

Each module named under `[tool.hero_codescalers.mutate.modules]` in pyproject.toml
says which source file is mutated, which of its functions count (mutant-name
globs, relative to the module), and which tests run against it. Only tests that
run the code in the test's own process can kill a mutant: mutmut switches
mutants inside the process, so a service started as a subprocess never sees
one.

mutmut imports the mutated copy of the package from `mutants/src`, so each
module gets a work directory `.mutate/<module>/` with the package under
`src/`, a copy of the tests, and pyproject.toml with a `[tool.mutmut]` table
made from the module's entry (mutmut reads its configuration from the current
directory only). Every run starts from a fresh copy.

At the end one line a module gives killed / timeout / survived / no tests /
total and the score, (killed + timeout) / total. A mutant that survived (or
that no selected test reaches) is equivalent when tests/mutation_equivalents.md
lists it with the line it puts in, and that is still the line mutmut changes;
any other is printed with its diff and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "hero_codescalers"
WORK = ROOT / ".mutate"
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.md"
# - `hero_codescalers.tags.x_labels__mutmut_8` `the line the mutant puts in` — why it is equivalent
_ENTRY = re.compile(r"^- `(?P<name>[^`]+)` `(?P<line>.+)` — (?P<reason>.+)$")
_RESULT = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")
# A mutant no test caught: it needs a test that kills it, or a recorded equivalence.
UNCAUGHT = frozenset({"survived", "no tests"})
_IGNORE = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache")


@dataclass(frozen=True)
class Module:
    """One module under mutation and the tests that run against it."""

    name: str
    source: str  # file path inside the package, e.g. "cleanup/walk.py"
    functions: list[str]  # mutant-name globs relative to the module, e.g. "xǁEngineǁ_select__*"
    tests: list[str]  # pytest arguments selecting the in-process tests that cover it
    mutmut: dict[str, Any]  # [tool.mutmut] settings of this module's run, over the shared ones

    @property
    def dotted(self) -> str:
        return f"{PACKAGE}.{self.source.removesuffix('.py').replace('/', '.')}"

    @property
    def globs(self) -> list[str]:
        return [f"{self.dotted}.{pattern}" for pattern in self.functions]


@dataclass(frozen=True)
class Equivalent:
    line: str  # the mutated line as mutmut's diff shows it, without the leading "+"
    reason: str


def load_config() -> tuple[dict[str, Any], dict[str, Module]]:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][PACKAGE]["mutate"]
    modules = {
        name: Module(
            name,
            entry["source"],
            list(entry["functions"]),
            list(entry["tests"]),
            dict(entry.get("mutmut", {})),
        )
        for name, entry in table["modules"].items()
    }
    return dict(table.get("mutmut", {})), modules


def load_equivalents() -> dict[str, Equivalent]:
    found: dict[str, Equivalent] = {}
    for raw in EQUIVALENTS.read_text().splitlines():
        if match := _ENTRY.match(raw):
            found[match["name"]] = Equivalent(match["line"].strip(), match["reason"])
    return found


def _toml(value: Any) -> str:
    """A TOML value for strings, numbers, booleans and lists of them (JSON spells them alike)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


def prepare(module: Module, shared: dict[str, Any]) -> Path:
    """A fresh work directory for `module`: the package under src/, the tests, the config."""
    work = WORK / module.name
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    shutil.copytree(ROOT / "service" / PACKAGE, work / "src" / PACKAGE, ignore=_IGNORE)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=_IGNORE)
    settings = {
        **shared,
        **module.mutmut,
        "source_paths": ["src"],
        "only_mutate": [f"src/{PACKAGE}/{module.source}"],
        "pytest_add_cli_args_test_selection": module.tests,
    }
    config = "\n".join(f"{key} = {_toml(value)}" for key, value in settings.items())
    pyproject = (ROOT / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(f"{pyproject}\n[tool.mutmut]\n{config}\n")
    return work


def mutmut(work: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mutmut", *args]
    if log is None:
        return subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    with log.open("w") as out:
        return subprocess.run(
            command, cwd=work, stdout=out, stderr=subprocess.STDOUT, text=True, check=False
        )


def results(work: Path, module: Module) -> dict[str, str]:
    """The status of each mutant of `module`'s selected functions."""
    listing = mutmut(work, "results", "--all", "true")
    statuses = {}
    for raw in listing.stdout.splitlines():
        if (match := _RESULT.match(raw)) and any(
            fnmatch.fnmatchcase(match["name"], glob) for glob in module.globs
        ):
            statuses[match["name"]] = match["status"]
    return statuses


def mutated_lines(work: Path, name: str) -> tuple[list[str], str]:
    """The lines mutant `name` puts in, and its whole diff."""
    diff = mutmut(work, "show", name).stdout
    added = [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    return added, diff


@dataclass
class Outcome:
    module: Module
    counts: Counter[str]
    seconds: float
    unexplained: list[str]
    stale: list[str]

    @property
    def score(self) -> float:
        total = sum(self.counts.values())
        return (self.counts["killed"] + self.counts["timeout"]) / total if total else 0.0


def run_module(module: Module, shared: dict[str, Any], jobs: int) -> float:
    """Run mutmut on `module` in a fresh work directory; the seconds it took."""
    started = time.monotonic()
    work = prepare(module, shared)
    log = work / "mutmut.log"
    print(f"== {module.name}: mutating {module.source} {module.functions} against {module.tests}")
    done = mutmut(work, "run", "--max-children", str(jobs), *module.globs, log=log)
    if done.returncode != 0:
        print(log.read_text()[-3000:])
        raise SystemExit(f"mutmut failed on {module.name} (exit {done.returncode}); log: {log}")
    return time.monotonic() - started


def judge(module: Module, equivalents: dict[str, Equivalent], seconds: float) -> Outcome:
    """The last run's results for `module`: counts, and the uncaught mutants not excused."""
    work = WORK / module.name
    if not (work / "mutants").is_dir():
        raise SystemExit(f"no results for {module.name}: run it first")
    statuses = results(work, module)
    unexplained: list[str] = []
    stale: list[str] = []
    for name, status in sorted(statuses.items()):
        if status not in UNCAUGHT:
            continue
        added, diff = mutated_lines(work, name)
        known = equivalents.get(name)
        if known is not None and known.line in added:
            print(f"   equivalent {name}: {known.reason}")
            continue
        if known is not None:
            stale.append(name)
        unexplained.append(name)
        print(f"   {status.upper()}: {name}\n{diff}")
    print(f"   (mutmut show, browse or apply: in {work.relative_to(ROOT)})")
    return Outcome(module, Counter(statuses.values()), seconds, unexplained, stale)


def main(argv: list[str] | None = None) -> int:
    shared, modules = load_config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"one of {list(modules)}")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--report",
        action="store_true",
        help="judge the last run's results again (after editing the equivalents) without a run",
    )
    args = parser.parse_args(argv)
    if unknown := [name for name in args.modules if name not in modules]:
        parser.error(f"unknown module {unknown}: choose from {list(modules)}")
    chosen = [modules[name] for name in args.modules] or list(modules.values())
    equivalents = load_equivalents()
    outcomes = [
        judge(module, equivalents, 0.0 if args.report else run_module(module, shared, args.jobs))
        for module in chosen
    ]
    print()
    print(
        f"{'module':<8} {'killed':>6} {'timeout':>7} {'survived':>8} {'(equiv.)':>8} "
        f"{'no tests':>8} {'other':>5} {'total':>5} {'score':>6} {'time':>6}"
    )
    for o in outcomes:
        survived = o.counts["survived"]
        uncaught = survived + o.counts["no tests"]
        counted = o.counts["killed"] + o.counts["timeout"] + survived + o.counts["no tests"]
        print(
            f"{o.module.name:<8} {o.counts['killed']:>6} {o.counts['timeout']:>7} {survived:>8} "
            f"{uncaught - len(o.unexplained):>8} {o.counts['no tests']:>8} "
            f"{sum(o.counts.values()) - counted:>5} {sum(o.counts.values()):>5} "
            f"{o.score:>6.1%} {o.seconds:>5.0f}s"
        )
    for o in outcomes:
        if o.stale:
            print(f"{o.module.name}: equivalents recorded for another mutated line: {o.stale}")
    unexplained = sum(len(o.unexplained) for o in outcomes)
    if unexplained:
        print(f"{unexplained} uncaught mutants have neither a test nor a recorded equivalence")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
