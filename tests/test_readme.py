"""The README's commands work as printed, from a fresh clone: every command block of README.md,
extracted from the file at test time (never copied here), run in order as a newcomer runs them.

The rules (README.md says them too, in a comment under its title; keep both true when you add
a section):

- Fenced blocks tagged ``bash``, ``console`` or ``python`` are run, in README order, in ONE shell
  session (``export``, ``cd`` and ``source .venv/bin/activate`` carry over to later blocks), in a
  fresh copy of the repository (what ``git ls-files`` lists, untracked new files included; no
  ``.venv`` state, no ``.meshplane``), with ``.venv/bin`` NOT on the PATH until the README
  activates it.  Blocks tagged ``text``, ``yaml``, ``json`` or nothing are samples: not run.
- ``bash``: each command (``\\`` continues a line; ``#`` comments are fine) must exit 0.  Its
  output is not compared.
- ``console``: a line ``$ CMD`` is a command, the lines after it (up to the next ``$``) its
  expected output.  A command must exit 0 (show another status as ``CMD || echo "exit $?"``).  Output (stdout and
  stderr together) is compared line by line after normalizing each line: runs of spaces count as
  one, and every word holding a digit (dots included: ``9.5ms``) — ports, ages, versions,
  counts, rates, ids, times — or a long upper-case id matches any such word; a line ``...`` stands for any lines (none included).  A
  command whose output does not match is run again for up to 30 s (the mesh converges while
  the demo applies a change); no expected lines: the output is not checked.
- ``python``: the block runs with ``python -`` of the session (the project's after
  activation) and must exit 0.
- ``<!-- readme-test: skip: REASON -->`` on the line just before a block keeps it from running;
  the reason is required (what the block needs that a test must not do, e.g. binding 0.0.0.0
  or another host's address, writing /var/lib) and the test lists the skipped blocks.
- Two commands are special: ``scripts/run`` (the demo, which runs until Ctrl-C) starts in the
  background where it appears; the session waits for its banner and it serves every later
  block, and the test stops it with SIGINT at the end (it must say what it stopped).
  ``scripts/test`` is the suite this test is part of: it is not run from here.

Isolation: the whole session, the demo included, runs in a network namespace this test creates
(named with its pid) and removes, so the README's default ports (8765, 18000, 15001, 8080,
9901-9904, 127.0.0.2-4) are free whatever else runs on the machine.  The copy's ``.venv`` is a
link to the environment running this test (``scripts/setup-venv`` finds it installed; the
copy's ``pyproject.toml`` is dated before its install stamp), and the web console's build
(``meshplane/console/static``, made with npm) is copied as built, so nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
RUN = {"bash", "console", "python"}
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(\S.*?)\s*-->\s*$")
DEMO_COMMAND = "scripts/run"
DEMO_READY = "meshplane demo is running"
NOT_RUN = {"scripts/test": "the whole suite, which this test is part of"}
RETRY_FOR = 30.0
CONSOLE_BUILD = "meshplane/console/static"
COMMAND_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    text: str
    skip: str | None


def blocks(readme: str) -> list[Block]:
    """The fenced blocks of ``readme``, with the skip reason of a ``readme-test: skip``."""
    found: list[Block] = []
    lines = readme.splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", lines[index])
        if not opening:
            index += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].startswith(fence):
            body.append(lines[index])
            index += 1
        before = lines[start - 1] if start > 0 else ""
        reason = SKIP.search(before)
        found.append(Block(start + 1, lang, "\n".join(body), reason.group(1) if reason else None))
        index += 1
    return found


def bash_commands(text: str) -> list[str]:
    """The commands of a ``bash`` block (continuation lines joined)."""
    commands: list[str] = []
    current = ""
    for line in text.splitlines():
        current += line + "\n"
        if line.rstrip().endswith("\\"):
            continue
        if current.strip() and not current.strip().startswith("#"):
            commands.append(current.rstrip("\n"))
        current = ""
    if current.strip():
        commands.append(current.rstrip("\n"))
    return commands


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of a ``console`` block."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and steps[-1][0].rstrip().endswith("\\") and not steps[-1][1]:
            command, expected = steps[-1]
            steps[-1] = (command + "\n" + line, expected)
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"console block: output before any '$ ' command: {line!r}")
    return steps


_WORD_WITH_DIGIT = re.compile(r"[A-Za-z0-9_.]*[0-9][A-Za-z0-9_.]*")
_LONG_ID = re.compile(r"\b[A-Z0-9]{16,}\b")


def normalize(line: str) -> str:
    line = _LONG_ID.sub("#", line)
    line = _WORD_WITH_DIGIT.sub("#", line)
    return " ".join(line.split())


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` has the ``expected`` lines (``...``: any lines), see the rules."""
    while expected and not expected[-1].strip():
        expected = expected[:-1]
    if not expected:
        return True
    got = [normalize(line) for line in actual if line.strip()]
    segments: list[list[str]] = [[]]
    for line in expected:
        if line.strip() == "...":
            segments.append([])
        else:
            segments[-1].append(normalize(line))
    anchored_start = bool(segments[0])
    anchored_end = bool(segments[-1])
    position = 0
    for number, segment in enumerate(segments):
        if not segment:
            continue
        last = len(got) - len(segment)
        starts = [position] if number == 0 and anchored_start else range(position, last + 1)
        for start in starts:
            if got[start : start + len(segment)] == segment:
                position = start + len(segment)
                break
        else:
            return False
    return not anchored_end or position == len(got)


def copy_tree(target: Path) -> None:
    """What a fresh clone holds: the tracked files and the new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


class Session:
    """One bash session inside a network namespace: state kept in files between commands."""

    def __init__(self, namespace: str, home: Path, state: Path, cwd: Path) -> None:
        self.namespace = namespace
        self.state = state
        self.env_file = state / "env"
        self.cwd_file = state / "cwd"
        self.cwd_file.write_text(str(cwd))
        self.env_file.write_text("")
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "NO_COLOR": "1",
        }

    def script(self, command: str) -> str:
        return (
            f"set -a; . {self.env_file}; set +a\n"
            f'cd "$(cat {self.cwd_file})"\n'
            f"{command}\n"
            "__status=$?\n"
            f"export -p > {self.env_file}.new && mv {self.env_file}.new {self.env_file}\n"
            f"pwd > {self.cwd_file}\n"
            "exit $__status\n"
        )

    def argv(self, command: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, "bash", "-c", self.script(command)]

    def run(self, command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command),
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            timeout=COMMAND_TIMEOUT,
        )

    def start(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as sink:
            return subprocess.Popen(
                self.argv(f"exec {command}"),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )


@pytest.fixture
def namespace() -> Iterator[str]:
    if shutil.which("ip") is None:
        pytest.fail("the README test needs iproute2 ('ip netns'): apt-get install iproute2")
    name = f"mp-readme-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def fresh_clone(tmp_path: Path) -> Path:
    clone = tmp_path / "meshplane"
    copy_tree(clone)
    venv = Path(sys.prefix)
    stamp = venv / ".meshplane-installed"
    if not stamp.exists():
        pytest.fail(f"{venv} was not made by scripts/setup-venv (no {stamp.name}): run it first")
    (clone / ".venv").symlink_to(venv, target_is_directory=True)
    before = stamp.stat().st_mtime - 60
    os.utime(clone / "pyproject.toml", (before, before))
    # the web console's build (npm, from the registry): reused as built, like the venv
    built = ROOT / CONSOLE_BUILD
    if not (built / ".built").exists():
        pytest.fail(f"{built} is not built: run scripts/setup-venv first")
    shutil.copytree(built, clone / CONSOLE_BUILD)
    return clone


def test_every_command_block_of_the_readme_works_as_printed(tmp_path: Path, namespace: str) -> None:
    clone = fresh_clone(tmp_path)
    readme = (clone / "README.md").read_text()
    state = tmp_path / "state"
    state.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    session = Session(namespace, home, state, clone)
    demo: subprocess.Popen[bytes] | None = None
    demo_log = tmp_path / "demo.log"
    failures: list[str] = []
    skipped: list[str] = []
    ran = 0

    def check(block: Block, command: str, expected: list[str] | None) -> None:
        nonlocal demo, ran
        where = f"README.md:{block.line} ({block.lang})"
        name = command.strip().split()[0] if command.strip() else ""
        if name in NOT_RUN:
            skipped.append(f"{where}: {command.strip()} — {NOT_RUN[name]}")
            return
        if name == DEMO_COMMAND:
            assert demo is None, f"{where}: the demo is started twice"
            demo = session.start(command, demo_log)
            deadline = time.monotonic() + 180
            while DEMO_READY not in demo_log.read_text(errors="replace"):
                if demo.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"{where}: {command} did not start the demo:\n{demo_log.read_text()}"
                    )
                time.sleep(0.2)
            ran += 1
            return
        deadline = time.monotonic() + RETRY_FOR
        first: str | None = None
        while True:
            result = session.run(command)
            first = result.stdout if first is None else first
            lines = result.stdout.splitlines()
            good_status = result.returncode == 0
            good_output = expected is None or matches(expected, lines)
            if (good_status and good_output) or time.monotonic() > deadline:
                break
            time.sleep(1)
        ran += 1
        if not good_status:
            failures.append(
                f"{where}: `{command}` exited {result.returncode}:\n{result.stdout[-3000:]}"
            )
        elif not good_output:
            shown = "\n".join(expected or [])
            failures.append(
                f"{where}: `{command}` printed\n{result.stdout[-3000:]}\nexpected\n{shown}"
                + (f"\n(the first run printed\n{first[-3000:]})" if first != result.stdout else "")
            )

    try:
        for block in blocks(readme):
            if block.lang not in RUN:
                continue
            if block.skip is not None:
                skipped.append(f"README.md:{block.line} ({block.lang}): {block.skip}")
                continue
            if block.lang == "bash":
                for command in bash_commands(block.text):
                    check(block, command, None)
            elif block.lang == "console":
                for command, expected in console_steps(block.text):
                    check(block, command, expected)
            else:
                result = session.run("python -", stdin=block.text)
                ran += 1
                if result.returncode != 0:
                    failures.append(
                        f"README.md:{block.line} (python) exited {result.returncode}:\n"
                        f"{result.stdout[-3000:]}"
                    )
    finally:
        if demo is not None and demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait(10)
    print(f"README: {ran} commands and blocks run; not run:", *skipped, sep="\n  ")
    assert demo is not None, "the README's Quick start no longer starts the demo (scripts/run)"
    banner = demo_log.read_text()
    assert "meshplane demo stopped:" in banner, banner[-3000:]
    # the banner's commands work as printed on the default port: no --server repeated
    assert "apply -f .meshplane/data/demo/weights-50-50.yaml" in banner, banner
    assert "--server" not in banner, banner
    assert not failures, "\n\n".join(failures)
    assert ran >= 10


def test_the_extraction_rules() -> None:
    """The rules above, on a small README of their own."""
    text = "\n".join(
        [
            "```bash",
            "echo one \\",
            "    two",
            "# a comment",
            "```",
            "<!-- readme-test: skip: needs another host -->",
            "```console",
            "$ false",
            "```",
            "```text",
            "$ not run",
            "```",
            "```console",
            "$ meshplane get vn -A",
            "NAMESPACE  NAME  AGE",
            "...",
            "demo       blue  25s",
            "```",
        ]
    )
    found = blocks(text)
    assert [(b.lang, b.skip) for b in found] == [
        ("bash", None),
        ("console", "needs another host"),
        ("text", None),
        ("console", None),
    ]
    assert bash_commands(found[0].text) == ["echo one \\\n    two"]
    steps = console_steps(found[3].text)
    assert steps == [
        ("meshplane get vn -A", ["NAMESPACE  NAME  AGE", "...", "demo       blue  25s"])
    ]
    actual = ["NAMESPACE  NAME   AGE", "blue       x      1m", "demo       blue   3s"]
    assert matches(steps[0][1], actual)
    assert not matches(steps[0][1], [*actual, "extra line"])
    assert not matches(["demo blue 25s"], ["demo green 25s"])
    assert matches(["token MPTQ4ZJX2L5N7RCWE3KA created"], ["token MPABCDEFGHJKLMNPQRST created"])
    assert matches(["client  14.5/s  0.0%  10ms"], ["client  3.25/s  1.5%  9.5ms"])
