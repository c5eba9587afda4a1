"""README.md's code runs as printed: every Python snippet in a fresh process against the
shipped model, and every command line of the program parses with its real parser."""

import json
import re
import shlex

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_python

README = (ROOT / "README.md").read_text()
SHIPPED = ROOT / "mnist_digit_recognition_model"


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def program_commands():
    """Each command line of README's shell blocks that runs the program: its arguments."""
    commands = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.lstrip("$ "), comments=True)
            for i, word in enumerate(words):
                if word.endswith("mnist_digit_recognition.py"):
                    commands.append(words[i + 1:])
    return commands


def test_readme_has_snippets_to_check_and_no_placeholders():
    assert len(blocks("python")) >= 4
    assert len(program_commands()) >= 15
    assert "\u00ab" not in README, "a placeholder is left: " + README.split("\u00ab")[1][:30]


@pytest.mark.parametrize("argv", program_commands(), ids=" ".join)
def test_every_command_line_in_readme_parses(argv):
    import mnist_digit_recognition as mdr

    action = argv[0] if argv and argv[0] in mdr.ACTIONS else "train"
    build_parser, _ = mdr.ACTIONS[action]
    flags = argv[1:] if action in argv[:1] else argv
    parser = build_parser("mnist_digit_recognition.py")
    if "--help" in flags:
        with pytest.raises(SystemExit, match="^0$"):
            parser.parse_args(flags)
    else:
        parser.parse_args(flags)


RUN_SNIPPETS = """
import contextlib, io, json, sys
outputs = []
for number, snippet in enumerate(json.load(open("snippets.json")), 1):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, f"README.md python snippet {number}", "exec"), {"__name__": "__main__"})
    outputs.append(printed.getvalue())
print(json.dumps(outputs))
"""


def test_every_python_snippet_in_readme_runs(full_arrays, tmp_path):
    """Each snippet classifies seven.png (a real MNIST test 7, 28x28) and prints [7]; the one
    reading people's pictures also gets three.jpg (a 3, dark on white, 280x280)."""
    x, y = full_arrays["x_test"], full_arrays["y_test"]
    Image.fromarray(x[np.flatnonzero(y == 7)[0]]).save(tmp_path / "seven.png")
    three = Image.fromarray(255 - x[np.flatnonzero(y == 3)[0]]).resize((280, 280))
    three.save(tmp_path / "three.jpg", quality=90)
    (tmp_path / SHIPPED.name).symlink_to(SHIPPED)
    snippets = blocks("python")
    (tmp_path / "snippets.json").write_text(json.dumps(snippets))
    # as a user runs them: from a folder holding the model, with the script importable
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + RUN_SNIPPETS
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    for snippet, printed in zip(snippets, outputs):
        expected = r"\[7 3\] \[[0-9. ]+\]" if "three.jpg" in snippet else r"\[7\]"
        assert re.fullmatch(expected + "\n", printed), f"snippet printed {printed!r}:\n{snippet}"
