"""diffcli plot and scan --plot: the numbers drawn are the API's (checked against SymPy), the files
are images of the stated size, the terminal drawing fits the terminal, and a pipe gets data."""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import polars as pl
import pytest
import sympy
from typer.testing import CliRunner

import diffcli
from diffcli.cli import app

matplotlib = pytest.importorskip("matplotlib")
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
BRAILLE_OR_BLOCKS = re.compile("[\u2800-\u28ff\u2580-\u259f]")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first, right after the signature)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_plotted_numbers_are_the_apis_and_sympys():
    x = sympy.Symbol("x")
    expr = sympy.exp(sympy.sin(x)) * x
    f = diffcli.formula("exp(sin(x))*x")
    drawn = f.plot({"x": (-3, 3, 201)}, show="value,grad,hessian,derivative:4")
    xs = drawn.data["x"]
    np.testing.assert_allclose(xs, np.linspace(-3, 3, 201), rtol=0, atol=1e-15)
    api = f.hessian({"x": xs}, wrt=["x"])
    for column in ("value", "grad_x", "hessian_x_x"):
        np.testing.assert_array_equal(drawn.data[column], api[column])
    np.testing.assert_array_equal(drawn.data["derivative_4"], f.derivative({"x": xs}, wrt=["x"], order=4)["derivative"])
    for column, order in (("value", 0), ("grad_x", 1), ("hessian_x_x", 2), ("derivative_4", 4)):
        oracle = sympy.lambdify(x, sympy.diff(expr, x, order), "numpy")(xs)
        np.testing.assert_allclose(drawn.data[column], oracle, rtol=1e-12, atol=1e-12)


def test_cli_csv_is_the_plotted_data():
    got = invoke("plot", "x**3*y", "--grid", "x=-2:2:9", "--at", "y=0.5", "--show", "value,grad,hessian", "-f", "csv")
    assert got.exit_code == 0, got.output
    frame = pl.read_csv(io.StringIO(got.stdout))
    assert frame.columns == ["x", "y", "value", "grad_x", "hessian_x_x"]
    expected = diffcli.formula("x**3*y").hessian({"x": frame["x"].to_numpy(), "y": 0.5}, wrt=["x"])
    for column in ("value", "grad_x", "hessian_x_x"):
        np.testing.assert_allclose(frame[column].to_numpy(), expected[column], rtol=1e-15)
    # finite differences of the value, an oracle independent of the symbolic derivative
    xs = frame["x"].to_numpy()
    h = 1e-6
    fd = ((xs + h) ** 3 * 0.5 - (xs - h) ** 3 * 0.5) / (2 * h)
    np.testing.assert_allclose(frame["grad_x"].to_numpy(), fd, rtol=1e-8, atol=1e-8)


def test_several_expressions_and_json():
    got = invoke("plot", "u=sin(x)", "v=x*y", "--grid", "x=0:1:3", "--at", "y=2", "-f", "ndjson")
    assert got.exit_code == 0, got.output
    first = got.stdout.splitlines()[0]
    assert first == '{"at":{"x":0.0,"y":2.0},"value":{"u":0.0,"v":0.0},"jacobian":{"u":{"x":1.0},"v":{"x":2.0}}}'


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["x*x"], 2, "plot draws over one --grid (curves) or two (a heatmap), got 0"),
        (["x+y+z", "--grid", "x=0:1:3", "--grid", "y=0:1:3", "--grid", "z=0:1:3"], 2, "got 3"),
        (["x", "--grid", "x=0:1:3", "--show", "slope"], 2, "unknown --show item 'slope'"),
        (["x", "--grid", "x=0:1:3", "--show", "derivative:x"], 2, "N of derivative:N must be a whole number"),
        (["x*y", "--grid", "x=0:1:3"], 2, "no value for y (not given by --grid or --at)"),
        (["x", "--grid", "x=0:1:3", "--output", "plot.bmp"], 2, "plot writes a figure (.png, .svg, .pdf)"),
        (["x", "--grid", "x=0:1:3", "--format", "gif"], 2, "unknown --format 'gif'"),
        (["x", "--grid", "x=0:1:3", "--size", "big"], 2, "--size 'big': expected WIDTHxHEIGHT"),
        (["x*y", "--grid", "x=0:1:3", "--grid", "y=0:1:3", "--format", "plot"], 2, "drawn as a figure"),
        (["x", "--grid", "x=0:1:3", "--at", "y=1", "--at", "y=2"], 2, "give --at once"),
        (["u=x", "v=x", "--grid", "x=0:1:3", "--show", "hessian"], 2, "takes one expression"),
        (["x +* 2", "--grid", "x=0:1:3"], 3, "syntax"),
    ],
)
def test_errors_are_one_line_and_an_exit_code(args, code, message):
    got = invoke("plot", *args)
    assert got.exit_code == code, got.output
    assert message in got.stderr
    assert got.stderr.startswith("diffcli: error: ") and "Traceback" not in got.stderr


def test_missing_matplotlib_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    target = tmp_path / "plot.png"
    got = invoke("plot", "x", "--grid", "x=0:1:3", "--output", str(target))
    assert got.exit_code == 2
    assert got.stderr.strip() == f"diffcli: error: --output {target} needs matplotlib: pip install 'diffcli[plot]'"
    assert not target.exists()


def test_png_is_an_image_of_the_stated_size_with_curves(tmp_path):
    target = tmp_path / "plot.png"
    got = invoke("plot", "x*sin(x)", "--grid", "x=-3:3:400", "--show", "value,grad,hessian", "-o", str(target),
                 "--size", "640x400")  # fmt: skip
    assert got.exit_code == 0, got.output
    data = target.read_bytes()
    assert png_size(data) == (640, 400)
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(data))
    assert pixels.shape[:2] == (400, 640)
    inner = pixels[100:300, 160:480, :3]  # inside the axes
    background = np.array([1.0, 1.0, 1.0])
    coloured = ~np.isclose(inner, background, atol=0.05).all(axis=2) & (np.ptp(inner, axis=2) > 0.2)
    assert coloured.sum() > 100  # the curves, in colour: neither blank nor only grey axes


def test_svg_has_paths_and_pdf_is_a_pdf(tmp_path):
    svg, pdf = tmp_path / "p.svg", tmp_path / "p.pdf"
    for target in (svg, pdf):
        got = invoke("plot", "tanh(x)", "--grid", "x=-3:3:100", "-o", str(target))
        assert got.exit_code == 0, got.output
    root = ET.fromstring(svg.read_bytes())
    paths = root.findall(".//{http://www.w3.org/2000/svg}path")
    assert len(paths) > 10
    assert float(root.get("width").removesuffix("pt")) == pytest.approx(960 / 100 * 72)
    assert pdf.read_bytes().startswith(b"%PDF")


def test_two_grids_draw_a_heatmap_with_arrows(tmp_path):
    target = tmp_path / "field.png"
    got = invoke("plot", "sin(x)*exp(-y**2)", "--grid", "x=-2:2:30", "--grid", "y=-2:2:20", "-o", str(target))
    assert got.exit_code == 0, got.output
    assert png_size(target.read_bytes()) == (960, 600)
    drawn = diffcli.formula("sin(x)*exp(-y**2)").plot({"x": (-2, 2, 30), "y": (-2, 2, 20)})
    assert drawn.shape == (30, 20) and list(drawn.data) == ["x", "y", "value", "grad_x", "grad_y"]
    fig = drawn.figure()
    ax = fig.axes[0]
    from matplotlib.collections import QuadMesh
    from matplotlib.quiver import Quiver

    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    (quiver,) = [c for c in ax.collections if isinstance(c, Quiver)]
    assert quiver.N == 20 * 20  # subsampled: at most 20 arrows a side
    csv = invoke("plot", "x*y", "--grid", "x=0:1:2", "--grid", "y=0:1:2", "-f", "csv").stdout
    assert csv.splitlines() == ["x,y,value,grad_x,grad_y", "0.0,0.0,0.0,0.0,0.0", "0.0,1.0,0.0,1.0,0.0",
                                "1.0,0.0,0.0,0.0,1.0", "1.0,1.0,1.0,1.0,1.0"]  # fmt: skip


def test_kinks_are_marked_and_noted():
    drawn = diffcli.formula("abs(x)").plot({"x": (-1, 1, 201)})
    assert np.flatnonzero(drawn.kinked).tolist() == [100]
    text = drawn.text(80, 15)
    assert "kink (not differentiable)" in text
    got = invoke("plot", "abs(x)", "--grid", "x=-1:1:201", "--format", "plot")
    assert got.exit_code == 0
    assert "'abs(x)' is not differentiable at 1 of 201 points" in got.stderr
    assert "kink" in got.stdout


def test_poles_leave_gaps_and_a_note():
    got = invoke("plot", "1/x", "--grid", "x=-1:1:201", "--format", "plot", "--size", "80x20")
    assert got.exit_code == 0, got.output
    assert "diffcli: note: value is not finite at 1 of 201 points (left out: a gap in the plot)" in got.stderr
    assert max(len(line) for line in got.stdout.splitlines()) <= 80
    low, high = diffcli.plots.limits([np.array([1 / x for x in np.linspace(-1, 1, 201) if x])])
    assert -30 < low < -1 and 1 < high < 30  # the pole does not flatten the curve


def test_scan_plot_draws_the_trajectory_and_keeps_output_for_data(tmp_path):
    data, picture = tmp_path / "rows.csv", tmp_path / "steps.png"
    args = ["scan", "x = x + h*v", "v = v - h*x", "--init", "x=1,v=0", "--steps", "20", "--at", "h=0.1",
            "--trajectory"]  # fmt: skip
    got = invoke(*args, "--plot", "--output", str(data), "--plot-output", str(picture))
    assert got.exit_code == 0, got.output
    assert "jacobian_x_h" in got.stdout and "┌" in got.stdout  # the drawing, with the sensitivities' legend
    rows = pl.read_csv(data)
    assert rows.height == 21 and "jacobian_v_v0" in rows.columns
    assert png_size(picture.read_bytes()) == (960, 600)
    drawn = diffcli.plots.trajectory(diffcli.scan(["x = x + h*v", "v = v - h*x"], init={"x": 1, "v": 0}, steps=20,
                                     data={"h": 0.1}, trajectory=True), ["x", "v"], ["jacobian_x_h"])  # fmt: skip
    np.testing.assert_array_equal(drawn.data["x"], rows["x"].to_numpy())
    assert invoke(*args[:-1], "--plot").exit_code == 2  # without --trajectory


def pty_run(args: list[str], columns: int, env: dict[str, str] | None = None) -> str:
    """``diffcli ARGS`` with stdout on a pseudo-terminal of ``columns`` columns; what it showed."""
    import fcntl
    import pty
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    process = subprocess.Popen(
        [sys.executable, "-m", "diffcli", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**environment, "DIFFCLI_NO_SERVER": "1", **(env or {})},
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=120) == 0, process.stderr.read()
    os.close(leader)
    return shown.decode().replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [80, 120])
def test_the_terminal_drawing_fits_the_terminal(columns):
    shown = pty_run(["plot", "x*sin(x)", "--grid", "x=-3:3:400", "--show", "value,grad,hessian"], columns)
    plain = ANSI_COLOUR.sub("", shown)
    lines = plain.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= columns
    assert max(len(line) for line in lines) >= columns - 12  # it uses the width
    assert "grad_x (d/dx)" in plain and "hessian_x_x (d²/dx²)" in plain and "└" in plain
    assert BRAILLE_OR_BLOCKS.search(plain)
    assert ANSI_COLOUR.search(shown)  # colours on a terminal


def test_no_color_means_no_colour_escapes():
    shown = pty_run(["plot", "x*sin(x)", "--grid", "x=-3:3:400"], 80, env={"NO_COLOR": "1"})
    assert not ANSI_COLOUR.search(shown)
    assert "value" in shown and "grad_x (d/dx)" in shown


def test_in_a_pipe_the_output_is_data_not_a_drawing():
    got = subprocess.run(
        [sys.executable, "-m", "diffcli", "plot", "x*x", "--grid", "x=0:1:3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DIFFCLI_NO_SERVER": "1"},
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == "x,value,grad_x\n0.0,0.0,0.0\n0.5,0.25,1.0\n1.0,1.0,2.0\n"


@pytest.mark.parametrize(
    "expr, shown",
    [("sqrt(-1-x**2)", "nothing to draw"), ("1e300*x", "(×1e300)"), ("exp(1000*x)", "(×1e307)")],
)
def test_the_drawing_survives_no_finite_or_huge_values(expr, shown):
    got = invoke("plot", expr, "--grid", "x=-1:1:201", "--format", "plot", "--size", "60x10")
    assert got.exit_code == 0, got.output
    assert shown in got.stdout
    assert all(len(line) <= 60 for line in got.stdout.splitlines())


def test_api_arguments_of_the_wrong_kind_are_usage_errors():
    g = diffcli.formula("x**3*y")
    for grid, options in [
        ({"x": (0, 1, 3)}, {"at": "y=2"}),
        ({"x": (0, 1, 3)}, {"at": {"y": [1, 2]}}),
        ({"x": (0, 1, 3)}, {"at": {"y": 1}, "show": 3}),
        ({"x": (0, 1)}, {"at": {"y": 1}}),
    ]:
        with pytest.raises(diffcli.UsageError):
            g.plot(grid, **options)
    with pytest.raises(diffcli.UsageError, match="cannot write"):
        g.plot({"x": (0, 1, 3)}, at={"y": 1}).save("/nonexistent/a.png")


def test_a_curve_of_gaps_beside_a_finite_one():
    got = invoke("plot", "a=x", "b=log(-1-x*x)", "--grid", "x=0:1:10", "--format", "plot", "--show", "value")
    assert got.exit_code == 0, got.output
    assert "b is not finite at 10 of 10 points" in got.stderr


def test_bad_grids_and_sizes_are_usage_errors():
    assert invoke("plot", "x", "--grid", "x=0:inf:5").exit_code == 2
    g = diffcli.formula("x")
    for grid in ({"x": "0:1:5"}, {"x": [[0, 1], [2, 3]]}, {"x": (0, float("inf"), 5)}):
        with pytest.raises(diffcli.UsageError):
            g.plot(grid)
    p = g.plot({"x": (np.float32(0), np.int64(1), np.int64(5))})
    for call in (lambda: p.text("80"), lambda: p.figure("10"), lambda: p.figure(0, 600)):
        with pytest.raises(diffcli.UsageError):
            call()
