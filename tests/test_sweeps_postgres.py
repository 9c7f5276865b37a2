"""`sweep run --storage postgresql://...`: engines on two "machines" share one study in a real PostgreSQL server.

The fixture starts a throw-away PostgreSQL cluster (initdb + pg_ctl from the Debian `postgresql` package, which
`.ci/run` installs) on a free loopback port, and stops it afterwards. Without PostgreSQL the test is skipped locally
and fails under CI (CI=true), so CI never passes without running it.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import optuna
import pytest


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if isinstance(found, list):
        return found[-1] if found else None
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="dinosim-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the package's `postgres` user
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run(as_owner + [initdb, "-D", str(data), "-A", "trust", "-U", "dinosim", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(as_owner + [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://dinosim@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_owner + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_engines_share_a_postgres_study(tmp_path, postgres_url, write_sweep, expected_value):
    path = write_sweep(tmp_path, run_cap=6)
    engines = [
        subprocess.Popen([sys.executable, "-m", "dinosim", "sweep", "run", str(path), "--storage", postgres_url,
                          "--sweep-dir", str(tmp_path / f"machine{i}")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in (1, 2)
    ]
    outputs = [engine.communicate(timeout=300)[0] for engine in engines]
    assert [engine.returncode for engine in engines] == [0, 0], outputs
    study = optuna.load_study(study_name="fake", storage=postgres_url)
    assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    for t in study.trials:
        assert t.value == pytest.approx(expected_value(t.user_attrs["params"]))
    ran_on = {Path(d).name for d in glob.glob(str(tmp_path / "machine*" / "trials" / "*"))}
    assert len(ran_on) == 6  # every trial number ran once, on one of the two machines
    assert all(any((tmp_path / m / "trials").glob("*")) for m in ("machine1", "machine2"))

    report = subprocess.run([sys.executable, "-m", "dinosim", "sweep", "report", str(tmp_path / "machine1"),
                             "--storage", postgres_url, "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["counts"]["complete"] == 6
    assert written["top"][0]["value"] == pytest.approx(max(t.value for t in study.trials))


@pytest.mark.parametrize("url,message", [
    ("postgresql://someone:secret@127.0.0.1:{port}/nowhere", "cannot open the study database"),
    ("not a url", "not a database URL"),
    ("mysql://someone:secret@127.0.0.1:{port}/nowhere", "the database driver for mysql is not installed"),
])
def test_bad_storage_is_a_one_line_error_before_any_trial(tmp_path, url, message, write_sweep):
    if "mysql" in url and importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("a MySQL driver is installed here")
    path = write_sweep(tmp_path, run_cap=1)
    url = url.format(port=_free_port())
    out = subprocess.run([sys.executable, "-m", "dinosim", "sweep", "run", str(path), "--storage", url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "secret" not in lines[0]
    assert not (tmp_path / "sweepdir").exists()
