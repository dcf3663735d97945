"""The `zooserve` command (zooserve/cli.py): its help, its usage errors, each subcommand's own --help, lazy
imports, and the message a training subcommand gives on an install without the `train` extras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zooserve import cli

ROOT = Path(__file__).resolve().parents[1]
# The import names of the `train` extras (pyproject.toml), none of which the serving install has.
TRAIN_EXTRAS = ("torch", "onnx", "onnxscript", "matplotlib", "sklearn", "safetensors", "tokenizers")
# An option that only this subcommand's own parser has (so a help text of the wrong command fails).
OWN_OPTION = {
    "serve": "--workers",
    "train": "--augment-flip",
    "train-ngram": "--smoothing",
    "train-rnn": "--cell",
    "train-mlp": "--hidden",
    "train-transformer": "--d-model",
    "train-autoencoder": "--dim",
    "train-gan": "--judge-samples",
    "report": "--output",
    "lm-report": "--char-orders",
    "text-report": "--text-column",
    "gen-report": "--cards",
    "image-grids": "--rows",
    "quantize": "--emulate",
    "fetch-data": "--no-download",
    "check-repository": "--repository",
    "healthcheck": "--timeout",
}


# A fresh interpreter in which some top-level packages do not exist: an import finder, first in line, that
# answers for them as Python does for a package that is not installed.
WITHOUT = """
import runpy, sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
runpy.run_module("zooserve", run_name="__main__")
"""


def run_zooserve(*argv: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`python -m zooserve ARGV` in a fresh interpreter, as on an install without the packages in `block`."""
    return subprocess.run([sys.executable, "-c", WITHOUT.format(blocked=block), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    return exit_.value.code


def test_every_command_has_a_help_check():
    assert set(OWN_OPTION) == set(cli.COMMANDS)


def test_help_lists_every_command_with_its_line(capsys):
    assert exit_code(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, command in cli.COMMANDS.items():
        assert any(line.split() == [name, *command.summary.split()] for line in lines), name


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_command_help_is_its_own(name, capsys):
    assert exit_code([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: zooserve {name} ")
    assert OWN_OPTION[name] in out
    others = {option for other, option in OWN_OPTION.items() if other != name and option not in out}
    assert others, "every other command's option shows: this is not one command's help"


def test_a_subcommand_error_names_the_subcommand_and_sys_argv_comes_back(capsys):
    before = list(sys.argv)
    assert exit_code(["healthcheck", "--port", "eighty"]) == 2
    assert "zooserve healthcheck: error: argument --port: invalid int value: 'eighty'" in capsys.readouterr().err
    assert sys.argv == before


@pytest.mark.parametrize("argv,message", [
    (["trian"], "argument COMMAND: invalid choice: 'trian'"),
    ([], "the following arguments are required: COMMAND"),
    (["--port", "8000"], "the following arguments are required: COMMAND"),
])
def test_usage_errors_exit_2_with_a_message(argv, message, capsys):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: zooserve ") and message in err


def test_python_m_zooserve_is_the_command():
    proc = run_zooserve("trian")
    assert proc.returncode == 2 and "invalid choice: 'trian'" in proc.stderr


def test_the_command_imports_neither_side():
    code = ("import sys, zooserve.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('service', 'training', 'torch', 'onnxruntime')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# Without the train extras, each training command is refused at the first import of torch (or onnx, ...):
# most import it at the top, so their --help already fails; quantize imports it only to quantize.
NEEDS_TRAIN_EXTRAS = {name: ["--help"] for name in ("train", "train-mlp", "train-ngram", "train-rnn", "train-transformer",
                                                    "train-autoencoder", "train-gan", "report", "lm-report",
                                                    "text-report", "gen-report")}
NEEDS_TRAIN_EXTRAS["quantize"] = ["models/fashion-lenet/1", "--out", "{tmp}"]
# fetch-data reads and checks idx files with numpy, image-grids runs ONNX files with onnxruntime and draws with
# Pillow: the serving install runs them (the serve image, which has no training/ at all, refuses them like the
# others).
RUNS_WITHOUT_TRAIN_EXTRAS = ("serve", "check-repository", "healthcheck", "fetch-data", "image-grids")


def test_every_command_is_checked_without_the_train_extras():
    assert sorted([*NEEDS_TRAIN_EXTRAS, *RUNS_WITHOUT_TRAIN_EXTRAS]) == sorted(cli.COMMANDS)


@pytest.mark.parametrize("name", sorted(NEEDS_TRAIN_EXTRAS))
def test_training_commands_without_the_train_extras_say_what_to_install(name, tmp_path):
    proc = run_zooserve(name, *(a.format(tmp=tmp_path) for a in NEEDS_TRAIN_EXTRAS[name]), block=TRAIN_EXTRAS)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"zooserve {name}: error: this install lacks the `train` extras (")
    assert "pip install '.[train]'" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", RUNS_WITHOUT_TRAIN_EXTRAS)
def test_serving_commands_need_no_train_extras(name):
    proc = run_zooserve(name, "--help", block=TRAIN_EXTRAS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: zooserve {name} ")


def test_without_the_training_package_every_training_command_says_what_to_install():
    """The serve image ships zooserve/ and service/ only."""
    for name in [*NEEDS_TRAIN_EXTRAS, "fetch-data", "image-grids"]:
        proc = run_zooserve(name, "--help", block=("training",))
        assert proc.returncode == 1 and "lacks the `train` extras (" in proc.stderr, (name, proc.stderr)


def test_a_missing_module_of_the_project_is_a_bug_not_missing_extras(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "typo", cli.Command("training.no_such_module:main", "-", train=True))
    with pytest.raises(ModuleNotFoundError, match="training.no_such_module"):
        cli.main(["typo"])
    monkeypatch.setitem(cli.COMMANDS, "extra", cli.Command("no_such_dependency:main", "-", train=True))
    assert cli.main(["extra"]) == 1
    assert "No module named 'no_such_dependency'" in capsys.readouterr().err


@pytest.fixture
def small_repository(tmp_path) -> Path:
    """A repository with the shipped fashion-lenet, island-ngram-word3 and tweets-transformer-int8 (a subword
    text classifier: its tokenizer.json needs no `tokenizers`), linked, not copied."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("fashion-lenet", "island-ngram-word3", "tweets-transformer-int8"):
        (repo / name).symlink_to(ROOT / "models" / name)
    return repo


@pytest.mark.parametrize("argv", [["serve", "--dry-run"], ["check-repository"]], ids=["serve-dry-run", "check"])
def test_repository_check_on_the_serving_install(argv, small_repository):
    proc = run_zooserve(*argv, "--repository", str(small_repository), block=TRAIN_EXTRAS)
    assert proc.returncode == 0, proc.stderr
    text_version = max(int(p.parent.name) for p in (small_repository / "tweets-transformer-int8").glob("*/model.json"))
    assert sorted(line.split()[:2] for line in proc.stdout.splitlines()) == [
        ["fashion-lenet/1:", "READY"], ["island-ngram-word3/1:", "READY"],
        [f"tweets-transformer-int8/{text_version}:", "READY"]]

    broken = small_repository / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.json").write_text((ROOT / "models" / "fashion-lenet" / "1" / "model.json").read_text())
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    proc = run_zooserve(*argv, "--repository", str(small_repository), block=TRAIN_EXTRAS)
    assert proc.returncode == 1
    assert "broken/1: UNAVAILABLE" in proc.stdout and "fashion-lenet/1: READY" in proc.stdout


def test_repository_check_of_an_empty_folder_fails(tmp_path):
    proc = run_zooserve("check-repository", "--repository", str(tmp_path))
    assert proc.returncode == 1 and f"no models found in {tmp_path}" in proc.stdout
