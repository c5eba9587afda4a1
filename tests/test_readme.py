"""README.md as a new user meets it: every Python block and every command line runs as printed,
from the root of a fresh clone (the tracked files only, as they are in the working tree), and
prints what README shows. Training commands go through the program's own checks (main() with
the training itself left out), so a command the program refuses fails here, but nothing trains.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_digits import cli, model_files
from PIL import Image

from conftest import NEEDS_MNIST, ROOT, missing, mnist_data_dir, our_stderr_lines

README = (ROOT / "README.md").read_text()
PYTHON_BIN = str(Path(sys.executable).parent)  # `python` of README: the environment's


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def shell_lines():
    """Each command line of README's bash blocks, continuation lines joined."""
    return [line for block in blocks("bash")
            for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def console_commands():
    """(command, the output lines README shows for it) of each `$ ` line of its console blocks."""
    commands = []
    for block in blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                commands[-1][1].append(line)
    return commands


def program_argv(line):
    """(environment assignments, the program's arguments) of a command line running the
    program, else None."""
    words = shlex.split(line, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if len(words) >= 2 and words[0] == "python" and words[1] == "mnist_digit_recognition.py":
        return env, words[2:]
    return None


def command_id(line):
    return " ".join(shlex.split(line, comments=True))


def action_of(argv):
    return argv[0] if argv and argv[0] in ("evaluate", "predict", "serve") else "train"


def matches(shown, printed):
    """README's output line against the printed one; `...` in README stands for anything."""
    pattern = ".*".join(map(re.escape, shown.split("...")))
    return re.fullmatch(pattern, printed) is not None


def assert_output(shown_lines, printed_lines, what):
    assert len(shown_lines) == len(printed_lines) and all(
        map(matches, shown_lines, printed_lines)), \
        f"{what} printed:\n" + "\n".join(printed_lines) + "\nREADME shows:\n" + "\n".join(shown_lines)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh `git clone` of this repository, its tracked files as they are in the working
    tree (so an uncommitted README is checked, and a file git does not track is missing)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the repository")
    folder = tmp_path_factory.mktemp("readme") / "mnist_digit_recognition"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, tracked):
        source, target = ROOT / name, folder / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists():  # deleted in the working tree
            target.unlink()
    return folder


def user_env(extra=None):
    """The environment of a user whose virtual environment is active (and who exported
    MNIST_DATA, as README says, where the tests have a copy)."""
    data = {"MNIST_DATA": str(mnist_data_dir())} if mnist_data_dir() else {}
    return {**os.environ, **data, "PATH": PYTHON_BIN + os.pathsep + os.environ["PATH"],
            **(extra or {})}


def run_line(line, cwd, timeout=300):
    """A command line of README, exactly as printed, by bash."""
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=user_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_readme_is_short_has_code_to_check_and_no_placeholders():
    assert README.count("\n") <= 250, "README is for users: at most 250 lines"
    assert len(blocks("python")) >= 4
    assert len([line for line in shell_lines() if program_argv(line)]) >= 10
    assert "\u00ab" not in README, "a placeholder is left: " + README.split("\u00ab")[1][:30]


def test_every_command_line_in_readme_is_checked():
    """Each shell line is one the tests below run: set-up (as CI runs it), the program, git."""
    for line in shell_lines():
        assert (line.startswith(("python3 -m venv", ".venv/bin/python", "git "))
                or program_argv(line)), f"README's command line is checked by no test: {line}"
    for command, _ in console_commands():
        assert program_argv(command) or command.startswith("curl "), command


def test_set_up_commands_are_what_ci_runs():
    """README's two set-up commands: CI (.ci/run) runs the same, the test command exactly."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_commands = [line.replace(" --quiet", "") for line in ci if not line.startswith("#")]
    set_up = [line for line in shell_lines() if line.startswith(("python3 -m venv", ".venv/"))]
    assert len(set_up) == 2, set_up
    install, test = set_up
    for part in install.split(" && "):
        assert part in ci_commands, f"{part!r} is not what .ci/run runs"
    assert test in ci, f"README's test command {test!r} is not the one .ci/run runs"


TRAINING = [line for line in shell_lines()
            if program_argv(line) and action_of(program_argv(line)[1]) == "train"
            and "--help" not in program_argv(line)[1]]


@pytest.mark.parametrize("line", TRAINING, ids=command_id)
def test_training_command_passes_the_programs_checks(line, clone, monkeypatch, capsys):
    """main() of the program on the command line, in the clone's root, with the action itself
    (training) replaced: the flags, and every check main() makes before it, must pass."""
    import mnist_digit_recognition as mdr

    env, argv = program_argv(line)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(clone)
    ran = []
    action = action_of(argv)
    monkeypatch.setitem(mdr.ACTIONS, action, (mdr.ACTIONS[action][0], lambda args: ran.append(args) or 0))
    status = mdr.main(argv)
    assert status == 0 and len(ran) == 1, f"the program refuses {line!r}: {capsys.readouterr().err}"


OTHER_ACTIONS = [line for line in shell_lines() if program_argv(line) and line not in TRAINING
                 and action_of(program_argv(line)[1]) != "serve"]


@pytest.mark.parametrize("line", OTHER_ACTIONS, ids=command_id)
def test_command_runs_as_printed(line, clone):
    """`evaluate`, `predict`, `--help`: run as printed, from the clone's root."""
    if "evaluate" in program_argv(line)[1] and not mnist_data_dir():
        missing(NEEDS_MNIST)
    result = run_line(line, clone)
    assert result.returncode == 0, result.stderr[-3000:]
    if "--help" in line:
        assert result.stdout.startswith("usage: mnist_digit_recognition.py")
    if "evaluate" in program_argv(line)[1]:
        shipped = json.loads((clone / "mnist_digit_recognition_model" / "metadata.json").read_text())
        accuracy = f"{shipped['test_accuracy']:.2%}"
        assert re.search(rf"^test accuracy +{re.escape(accuracy)}$", result.stdout, re.M)
        assert f"**{accuracy}**" in README


def test_git_commands_run_as_printed(clone):
    """git lines, in blocks or inline (`git checkout -- ...` brings the shipped model back)."""
    inline = re.findall(r"`(git [^`]+)`", README)
    assert inline, "README says how to bring the shipped model back"
    for line in [line for line in shell_lines() if line.startswith("git ")] + inline:
        result = run_line(line, clone)
        assert result.returncode == 0, f"{line}: {result.stderr}"


@pytest.mark.parametrize("command,shown", [c for c in console_commands() if program_argv(c[0])],
                         ids=lambda value: value if isinstance(value, str) else "shown")
def test_console_command_prints_what_readme_shows(command, shown, clone):
    result = run_line(command, clone)
    errors = [line for line in shown if line.startswith("error: ")]
    assert_output([line for line in shown if line not in errors], result.stdout.splitlines(),
                  command)
    assert_output(errors, our_stderr_lines(result.stderr), command + " (stderr)")
    assert result.returncode == (1 if errors else 0)


def port_is_free(port):
    """As the server binds (with SO_REUSEADDR: closed connections waiting out TIME_WAIT do not
    hold the port)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_serve_and_curl_as_printed(clone):
    """README's `serve` line in the clone's root, then its curl lines against it."""
    [line] = [line for line in shell_lines()
              if program_argv(line) and action_of(program_argv(line)[1]) == "serve"]
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    if not port_is_free(8000):
        pytest.skip("port 8000, README's, is taken on this machine")
    server = subprocess.Popen(["bash", "-c", line], cwd=clone, env=user_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        first = server.stdout.readline()
        assert first.startswith("Serving mnist_digit_recognition_model on "
                                "http://127.0.0.1:8000/"), first + server.stderr.read()
        curls = [(command, shown) for command, shown in console_commands()
                 if command.startswith("curl ")]
        assert curls
        for command, shown in curls:
            result = run_line(command, clone, timeout=60)
            assert result.returncode == 0, result.stderr
            assert_output(shown, result.stdout.splitlines(), command)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    assert "Server stopped." in out and server.returncode == 0


SNIPPETS = blocks("python")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(1, len(SNIPPETS) + 1)])
def test_python_snippet_runs_as_printed(snippet, clone):
    """Each Python block in a fresh interpreter in the clone's root (as `python` there runs
    it), with TF_CPP_MIN_LOG_LEVEL=3 as README says; it prints what its comments show."""
    result = subprocess.run([sys.executable, "-c", snippet], cwd=clone, capture_output=True,
                            text=True, timeout=300, env=user_env({"TF_CPP_MIN_LOG_LEVEL": "3"}))
    assert result.returncode == 0, result.stderr[-3000:]
    shown = [line.split("  # ", 1)[1] for line in snippet.splitlines()
             if line.startswith("print(") and "  # " in line]
    assert shown, "each snippet shows what it prints"
    assert_output(shown, result.stdout.splitlines(), snippet)
    assert "cuInit" not in result.stderr  # README: TF_CPP_MIN_LOG_LEVEL=3 quiets that line


def test_links_and_sample_paths_exist(clone):
    for readme in (clone / "README.md", clone / "benchmarks" / "README.md"):
        text = readme.read_text()
        for target in re.findall(r"\]\(([^)#:]+)\)|src=\"([^\"]+)\"", text):
            path = readme.parent / (target[0] or target[1])
            assert path.exists(), f"{readme.relative_to(clone)} links to a missing {path}"
    for name in set(re.findall(r"samples/[\w.]+", README)):
        assert (clone / name).is_file(), f"README uses {name}, which a clone does not have"


def test_samples_are_the_mnist_digits_make_samples_says(data_dir, clone, tmp_path):
    """samples/make_samples.py, run on MNIST, makes the pictures the repository ships (the same
    pixels; a JPEG's within a grey level or two of another encoder's)."""
    npz = Path(data_dir) / "mnist.npz"
    if not npz.is_file():
        pytest.skip(f"samples/make_samples.py reads a mnist.npz; {data_dir} has none")
    shutil.copy(clone / "samples" / "make_samples.py", tmp_path)
    subprocess.run([sys.executable, str(tmp_path / "make_samples.py"), str(npz)], check=True)
    shipped = sorted(path.name for path in (clone / "samples").iterdir() if path.suffix != ".py")
    assert shipped == sorted(path.name for path in tmp_path.iterdir() if path.suffix != ".py")
    for name in shipped:
        made, kept = (np.asarray(Image.open(folder / name), dtype=float)
                      for folder in (tmp_path, clone / "samples"))
        assert made.shape == kept.shape, name
        assert np.abs(made - kept).mean() < (1 if name.endswith(".jpg") else 1e-9), name


def test_shipped_models_numbers_in_readme_are_its_metadata():
    """Training time means one thing: the sum of the epochs' epoch_seconds; wall time is the
    summary's (wall_seconds)."""
    metadata = model_files.read_metadata(ROOT / "mnist_digit_recognition_model")
    training_minutes = sum(epoch["epoch_seconds"] for epoch in metadata["history"]) / 60
    row = next(line for line in README.splitlines()
               if line.startswith("| ") and "(the shipped model)" in line)
    assert (f"| {metadata['test_accuracy']:.2%} | {metadata['test_loss']:.4f} | "
            f"{training_minutes:.1f} min |") in row, row
    wall_time = f"(the shipped model: {cli.format_duration(metadata['wall_seconds'])})"
    assert wall_time in " ".join(README.split()), wall_time
