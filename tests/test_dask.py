"""Dask (README: "Beyond one machine"): a formula's methods on Dask DataFrames, partition by
partition, equal to the same method on the computed frame; ``--engine dask`` writes one part per
input file, whose rows are the local engine's bit for bit, and fails as the local engine fails,
leaving no part; Ray's ``map_batches`` with a method of a formula."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

dd = pytest.importorskip("dask.dataframe", reason="Dask is an extra: pip install -e '.[dask]'")
distributed = pytest.importorskip("distributed", reason="Dask is an extra: pip install -e '.[dask]'")
pd = pytest.importorskip("pandas")

import diffcli  # noqa: E402 - after the skips
import diffcli.dask  # noqa: E402
from diffcli.cli import app  # noqa: E402

from .conftest import run_cli  # noqa: E402

FILES, ROWS = 8, 400  # 8 files of 400 rows: key, x, y
EXPR = "x**2*sin(y) + log(x)"  # log(x) of x <= 0: non-finite values, noted by part


def frame(number: int) -> pl.DataFrame:
    """File ``number``'s rows: keys unique across files, x from -1 to 3 (so some log(x) are NaN)."""
    keys = np.arange(number * ROWS, (number + 1) * ROWS)
    return pl.DataFrame({"key": keys, "x": np.sin(keys * 0.37) * 2 + 1, "y": np.cos(keys * 0.11) * 3})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The 8 files as Parquet and as CSV, and all their rows as one file of each."""
    folder = tmp_path_factory.mktemp("data")
    for fmt in ("parquet", "csv"):
        (folder / fmt).mkdir()
        for number in range(FILES):
            getattr(frame(number), f"write_{fmt}")(folder / fmt / f"f{number}.{fmt}")
        getattr(pl.concat([frame(n) for n in range(FILES)]), f"write_{fmt}")(folder / f"all.{fmt}")
    return folder


# The Python API on Dask DataFrames


def test_a_method_on_a_dask_frame_is_the_method_on_the_computed_frame():
    f = diffcli.formula(EXPR)
    ddf = dd.from_pandas(frame(0).to_pandas(), npartitions=3)
    whole = f.grad(ddf.compute())
    assert type(f.grad(ddf)).__module__.startswith("dask.")  # lazy: nothing computed yet
    pd.testing.assert_frame_equal(f.grad(ddf).compute(), whole, check_exact=True)
    pd.testing.assert_frame_equal(diffcli.dask.apply(ddf, f.grad).compute(), whole, check_exact=True)
    assert list(f.grad(ddf).columns) == [*whole.columns] and f.grad(ddf).dtypes.equals(whole.dtypes)  # meta
    tangent = f.jvp(ddf, tangent={"x": 1}, wrt=["x", "y"]).compute()
    pd.testing.assert_frame_equal(tangent, f.jvp(ddf.compute(), tangent={"x": 1}, wrt=["x", "y"]), check_exact=True)


def test_dask_data_other_than_a_dataframe_is_a_usage_error():
    import dask.array

    with pytest.raises(diffcli.UsageError, match="must be a Dask DataFrame, got Array"):
        diffcli.formula("x").grad(dask.array.ones(3))


@pytest.fixture(scope="module")
def cluster():
    """A cluster of one worker process on the loopback, for the tests that use a cluster of their own."""
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        silence_logs=logging.CRITICAL,
    ) as running:  # fmt: skip
        yield running


@pytest.mark.slow
def test_the_api_on_a_local_cluster_of_processes(cluster):
    f = diffcli.formula(EXPR)
    rows = frame(1).to_pandas()
    with distributed.Client(cluster) as client:
        pd.testing.assert_frame_equal(client.submit(f.grad, rows).result(), f.grad(rows), check_exact=True)
        ddf = dd.from_pandas(rows, npartitions=4)
        pd.testing.assert_frame_equal(diffcli.dask.apply(ddf, f.hessian).compute(), f.hessian(rows), check_exact=True)


# --engine dask on the command line


def parts(folder, fmt: str = "parquet") -> pl.DataFrame:
    names = sorted(os.listdir(folder))
    assert names == [f"part-{n:05d}.{fmt}" for n in range(FILES)]  # one part per file, and nothing else
    read = pl.read_parquet if fmt == "parquet" else pl.read_csv
    return pl.concat([read(folder / name) for name in names])


def test_the_workers_rows_are_the_local_engines_bit_for_bit(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("part-00003.parquet", "part-00011.parquet", "notes.txt"):  # a last run's parts, and a file of ours
        (out / name).write_text("old")
    got = run_cli("grad", EXPR, "--input", str(data / "parquet" / "*.parquet"), "-o", str(out), "--engine", "dask",
                  "--workers", "2")  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert (out / "notes.txt").read_text() == "old"
    (out / "notes.txt").unlink()
    local = run_cli("grad", EXPR, "--input", str(data / "all.parquet"), "-o", str(tmp_path / "local.parquet"))
    assert local.returncode == 0, local.stderr
    spread, whole = parts(out).sort("key"), pl.read_parquet(tmp_path / "local.parquet").sort("key")
    assert spread.columns == whole.columns and spread.equals(whole)  # NaN where log(x) is NaN: equal too
    notes = []  # what the local engine notes for each file, naming the part
    for n in range(FILES):
        rows = whole.filter(pl.col("key") // ROWS == n)
        for column in ("value", "grad_x", "grad_y"):
            bad = rows.height - int(rows[column].is_finite().sum())
            if bad:
                notes.append(f"diffcli: note: part-{n:05d}.parquet: {column} is not finite in {bad} of {ROWS} rows "
                             "(written as NaN/inf)")  # fmt: skip
    assert notes and sorted(got.stderr.splitlines()) == sorted(notes)


def test_a_csv_glob_into_csv_parts_is_the_local_engines_text(data, tmp_path):
    out = tmp_path / "out"
    got = run_cli("hessian", "x*y**3/2x", "--input", str(data / "csv" / "*.csv"), "-o", str(out), "--format", "csv",
                  "--engine", "dask", "--workers", "2")  # fmt: skip
    local = run_cli("hessian", "x*y**3/2x", "--input", str(data / "all.csv"), "--format", "csv")
    assert got.returncode == 0 and got.stderr == local.stderr  # how /2x was read: noted once, not once a part
    assert got.stderr.count("note:") == 1
    texts = [(out / name).read_text().splitlines() for name in sorted(os.listdir(out))]
    assert {text[0] for text in texts} == {local.stdout.splitlines()[0]}  # one header each, the local one
    assert sorted(line for text in texts for line in text[1:]) == sorted(local.stdout.splitlines()[1:])


def test_a_scheduler_of_a_running_cluster_whose_workers_work_in_another_folder(data, tmp_path, cluster):
    (tmp_path / "in").mkdir()
    for number in (0, 1):
        frame(number).write_parquet(tmp_path / "in" / f"f{number}.parquet")
    command = [sys.executable, "-m", "diffcli", "value", "x*y", "--input", "in/*.parquet", "-o", "out",
               "--engine", "dask", "--scheduler", cluster.scheduler_address]  # fmt: skip
    got = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "DIFFCLI_NO_SERVER": "1"}
    )
    assert got.returncode == 0, got.stderr
    for number in (0, 1):  # relative paths are the command's: the workers find them under its folder
        rows = pl.read_parquet(tmp_path / "out" / f"part-{number:05d}.parquet")
        assert rows.equals(frame(number).with_columns(value=pl.col("x") * pl.col("y")))


def test_a_bad_row_in_the_sixth_file_fails_as_the_local_engine_and_leaves_no_part(data, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for number in range(FILES):
        rows = frame(number)
        if number == 5:
            rows = rows.with_columns(
                pl.when(pl.col("key") == 5 * ROWS + 7).then(None).otherwise(pl.col("y")).alias("y")
            )
        rows.write_parquet(inputs / f"f{number}.parquet")
    out = tmp_path / "out"
    got = run_cli("grad", "x*y", "--input", str(inputs), "-o", str(out), "--engine", "dask", "--workers", "2")
    local = run_cli("grad", "x*y", "--input", str(inputs / "f5.parquet"), "-o", str(tmp_path / "local.parquet"))
    assert got.returncode == local.returncode == 4
    assert got.stderr == local.stderr == f"diffcli: error: {inputs / 'f5.parquet'}: row 8, column 'y': missing value\n"
    assert not out.exists()  # no part, no folder of this run's parts, and not the folder it made


def test_ctrl_c_stops_the_workers_and_leaves_no_part_and_no_traceback(data, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "diffcli", "grad", EXPR, "--input", str(data / "parquet"), "-o", str(out),
               "--engine", "dask", "--workers", "2"]  # fmt: skip
    env = {**os.environ, "DIFFCLI_NO_SERVER": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    deadline = time.monotonic() + 60
    while not (out.exists() and os.listdir(out)) and time.monotonic() < deadline:  # the run's hidden folder
        time.sleep(0.05)
    time.sleep(2)  # the cluster starting or running: both end the same way
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the workers too
    assert process.wait(timeout=60) == 130 and process.stderr.read() == "diffcli: interrupted\n"
    assert not out.exists()
    while alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(process.pid)


def alive(group: int) -> bool:
    """Whether a process of the process group ``group`` still runs (zombies waiting for init aside)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = Path(stat).read_text().rpartition(")")[2].split()  # after the name: state, ppid, pgrp, ...
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


# Usage errors, before any cluster starts

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "x=1"], "--at without --input: --engine dask evaluates the rows of files"),
        (["--input", "-", "-o", "out"], "--input -: --engine dask reads files, not stdin"),
        (["--input", "f.csv"], "--engine dask writes a folder of parts, not stdout: give --output FOLDER"),
        (["--input", "f.csv", "-o", "out", "--expect", "value=1"], "--expect compares the results in one process"),
        (["--input", "nothing/*.csv", "-o", "out"], "--input nothing/*.csv: no files found"),
        (["--input", "f.csv", "-o", "f.csv"], "--output f.csv is a file: --engine dask writes a folder of parts"),
        (["--input", "f.csv", "-o", "out", "--format", "table"], "--format table: --engine dask writes its parts as"),
        (["--workers", "0"], "--workers must be positive, got 0"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "give one"),
    ],
)
def test_what_means_nothing_spread_over_files_is_a_usage_error(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.csv").write_text("x\n1\n")
    result = runner.invoke(app, ["grad", "x", "--engine", "dask", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert sorted(os.listdir(tmp_path)) == ["f.csv"]  # no output folder made


@pytest.mark.parametrize("flag", [["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]])
def test_cluster_options_need_the_dask_engine(flag):
    result = runner.invoke(app, ["grad", "x", "--at", "x=1", *flag])
    assert result.exit_code == 2 and f"{flag[0]} needs --engine dask" in result.output


def test_without_dask_the_engine_is_a_usage_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)  # what an installation without the extra finds
    (tmp_path / "f.csv").write_text("x\n1\n")
    result = runner.invoke(app, ["grad", "x", "--input", str(tmp_path / "f.csv"), "-o", str(tmp_path / "out"),
                                 "--engine", "dask"])  # fmt: skip
    assert result.exit_code == 2
    assert result.output == "diffcli: error: --engine dask needs Dask: pip install 'diffcli[dask]'\n"


def test_an_unknown_engine_is_a_usage_error():
    result = runner.invoke(app, ["grad", "x", "--at", "x=1", "--engine", "spark"])
    assert result.exit_code == 2 and "--engine must be local or dask, got 'spark'" in result.output


# Ray: map_batches with a method of a formula (README: "Beyond one machine")


def test_ray_map_batches_with_a_method_of_a_formula():
    ray = pytest.importorskip("ray", reason="Ray is not installed (not a dependency; the README shows its use)")
    import pyarrow as pa

    f = diffcli.formula(EXPR)
    rows = frame(2).to_arrow()
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        got = ray.data.from_arrow(rows).map_batches(f.grad, batch_format="pyarrow").to_arrow_refs()
        assert pa.concat_tables(ray.get(got)).sort_by("key").equals(f.grad(rows).sort_by("key"))
    finally:
        ray.shutdown()
