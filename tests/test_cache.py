"""The cache of compiled formulas (``cache.py``): a command run again gives the same bytes from
it, without parsing or SymPy; entries are private JSON data, checked when read, and anything else
(another version's, a broken file, a kernel nobody lowers to, a folder others may read) is a miss."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from diffcli import cache, program, rules
from diffcli.cli import app
from diffcli.program import Evaluation, Program

from .conftest import run_cli

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("DIFFCLI_NO_CACHE", raising=False)
    return tmp_path / "diffcli"


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def entries(folder) -> list:
    return sorted(folder.glob("*.json"))


WIDE = "+".join(f"tanh(0.{i}*x{i % 5} + sin(y*x{(i + 1) % 5}))" for i in range(1, 30))  # taken over its graph


@pytest.mark.parametrize(
    "args",
    [
        ("hessian", "x**2*sin(y) + exp(x*y) + 1/2x", "--grid", "x=-1:1:5", "--at", "y=0.5"),
        ("grad", WIDE, "--at", "x0=0.1,x1=0.2,x2=-0.3,x3=0.4,x4=2,y=-1"),
        ("jacobian", "u = x*y", "v = where(x > 0, sqrt(x), -x)", "--grid", "x=-1:1:3", "--at", "y=2"),
        ("jvp", "f = x*y", "g = log(x)", "--tangent", "x=1,y=pi", "--grid", "x=-1:1:3", "--at", "y=2"),
        ("vjp", "f = x*y", "g = abs(x)", "--cotangent", "f=2", "--grid", "x=-1:1:3", "--at", "y=2"),
        ("derivative", "sin(x)*y", "--wrt", "x,y", "--grid", "x=0:1:3", "--at", "y=2", "--prefix", "d_"),
        ("value", "x/3", "--aux", "c=x**3", "--at", "x=2"),
    ],
)
def test_a_command_run_again_is_served_from_the_cache_byte_for_byte(home, args):
    first = invoke(*args, "--format", "csv")
    assert len(entries(home)) == 1
    stamp = entries(home)[0].stat().st_mtime_ns
    again = invoke(*args, "--format", "csv")
    assert (again.stdout, again.stderr) == (first.stdout, first.stderr)  # notes (1/2x, kinks) too
    assert entries(home)[0].stat().st_mtime_ns == stamp  # read, not written again


def test_entries_are_private_json_data_naming_only_known_kernels(home):
    invoke("grad", WIDE, "--at", "x0=1,x1=2,x2=3,x3=4,x4=5,y=6")
    (entry,) = entries(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and stat.S_IMODE(entry.stat().st_mode) == 0o600
    data = json.loads(entry.read_text())
    assert {name for name, _ in data["evaluation"]["program"]["calls"]} <= program.KERNELS


def test_every_kernel_the_lowering_names_may_be_read_back():
    assert {r.kernel for r in rules.RULES.values()} | {r.kernel for r in rules.UNNAMED} <= program.KERNELS
    for name in program.KERNELS:
        assert callable(program.kernel(name))


def test_taylor_mode_is_not_cached_and_symbolic_output_is_made_each_time(home):
    invoke("derivative", "sin(x)", "--wrt", "x", "--order", "3", "--at", "x=1")
    assert entries(home) == []
    plain = invoke("grad", "sin(x)", "--at", "x=1", "--format", "csv")
    assert len(entries(home)) == 1
    symbolic = invoke("grad", "sin(x)", "--symbolic", "--at", "x=1", "--format", "csv")
    assert "cos(x)" in symbolic.stdout and symbolic.stdout.startswith(plain.stdout.splitlines()[0])


def test_different_options_are_different_entries(home):
    for extra in ([], ["--wrt", "x"], ["--prefix", "d_"]):
        invoke("grad", "x*y", "--at", "x=1,y=2", *extra)
    assert len(entries(home)) == 3


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(format=99),
        lambda d: d.update(key="0" * 64),
        lambda d: d["evaluation"]["program"]["calls"].__setitem__(0, ["os.system", [0]]),
        lambda d: d["evaluation"]["program"]["calls"].__setitem__(0, ["torch.sin", [999]]),
        lambda d: d["evaluation"]["program"]["constants"].append("1"),
        lambda d: d["evaluation"]["program"]["results"].append(10**6),
        lambda d: d["evaluation"]["columns"].pop(),
        lambda d: d["evaluation"]["masks"].append(["grad_x", ["nowhere"]]),
        lambda d: d["outline"]["quantities"].pop(),
        lambda d: d["outline"].update(variables=["x", "z"]),
        lambda d: d.pop("notes"),
        lambda d: d["evaluation"]["program"]["calls"].__setitem__(0, ["torch.sin", [0, 1]]),  # runs: no
        lambda d: d["evaluation"]["program"]["calls"].__setitem__(0, ["add", []]),
        lambda d: d["evaluation"]["program"].update(names=["x", "x"]),
        lambda d: d["outline"]["quantities"][0].__setitem__(0, []),
        lambda d: d["outline"].update(quantities=[]),
    ],
)
def test_an_entry_not_as_written_is_a_miss_and_is_written_again(home, damage):
    args = ("grad", "x**2*y", "--at", "x=3,y=2", "--format", "csv")
    first = invoke(*args)
    (entry,) = entries(home)
    data = json.loads(entry.read_text())
    damage(data)
    entry.write_text(json.dumps(data))
    assert cache.load(entry.stem) is None
    assert invoke(*args).stdout == first.stdout
    assert cache.load(entry.stem) is not None  # repaired


def test_a_broken_or_foreign_file_is_a_miss(home):
    args = ("grad", "x*y", "--at", "x=1,y=2", "--format", "csv")
    first = invoke(*args)
    (entry,) = entries(home)
    for text in ("", "{", "[1, 2]", "null", '{"format": 1}', "\x00" * 10, "[" * 100_000 + "]" * 100_000):
        entry.write_text(text)
        assert cache.load(entry.stem) is None
        assert invoke(*args).stdout == first.stdout


def test_an_entry_that_is_a_link_or_a_fifo_is_a_miss_at_once(home, tmp_path):
    args = ("grad", "x*y", "--at", "x=1,y=2", "--format", "csv")
    first = invoke(*args)
    (entry,) = entries(home)
    good = tmp_path / "elsewhere.json"
    entry.rename(good)
    entry.symlink_to(good)  # the very entry, but through a link
    assert cache.load(entry.stem) is None
    entry.unlink()
    os.mkfifo(entry)  # would block a reader
    assert cache.load(entry.stem) is None
    assert invoke(*args).stdout == first.stdout


def test_a_folder_others_may_use_is_not_used(home):
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    invoke("grad", "x*y", "--at", "x=1,y=2")
    assert entries(home) == [] and cache.folder() is None


def test_off_when_asked_or_when_the_folder_cannot_be_made(home, monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFCLI_NO_CACHE", "1")
    invoke("grad", "x*y", "--at", "x=1,y=2")
    assert not home.exists()
    monkeypatch.delenv("DIFFCLI_NO_CACHE")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # not a folder
    assert invoke("grad", "x*y", "--at", "x=1,y=2").stdout


def test_a_program_round_trips_through_its_data_exactly():
    made = Program(("x",), (0.1, -0.0, float("inf"), True), (("torch.mul", (0, 1)), ("add", (0, 1, 5))), (5, 6))
    back = Program.from_data(json.loads(json.dumps(made.data())))
    assert back == made and str(back.constants[1]) == "-0.0"
    evaluation = Evaluation(made, ("value", "grad_x"), (("grad_x", ("value",)),))
    assert Evaluation.from_data(json.loads(json.dumps(evaluation.data()))) == evaluation


def test_a_cached_command_imports_no_sympy(home):
    args = ["grad", "x**2*sin(y)", "--input", "-", "--format", "csv"]
    env = {"XDG_CACHE_HOME": str(home.parent), "DIFFCLI_NO_SERVER": "1"}
    first = run_cli(*args, stdin="x,y\n1,2\n3,4\n", env=env)
    again = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "diffcli", *args],
        input="x,y\n1,2\n3,4\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert again.returncode == 0 and again.stdout == first.stdout
    imported = {line.rpartition("|")[2].strip() for line in again.stderr.splitlines() if "|" in line}
    assert "diffcli.jobs" in imported and "sympy" not in imported and "diffcli.language" not in imported


def test_the_labels_of_kink_notes_come_back_from_the_cache(home):
    args = ("grad", "abs(x)", "--grid", "x=-1:1:3")
    first = invoke(*args)
    assert "'abs(x)' is not differentiable at 1 of 3 points" in first.stderr
    assert invoke(*args).stderr == first.stderr
