"""A real single-node SLURM for tests: munged, slurmctld and slurmd on this host, with their own
ports, key, sockets, state and logs in a temporary folder, stopped when the context ends.

The daemons come from Debian's `slurm-wlm` and `munge` packages (`tests/setup/install_slurm.sh`,
run by `make test`, installs them when missing). Process tracking and task binding are the
plain ones (`proctrack/linuxproc`, `task/none`): no cgroups needed, so it runs in a container.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import free_port

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol")
DAEMON_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")

CONF = """\
ClusterName=harness-test
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/munge.socket
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool/%n
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# scancel: SIGTERM, then SIGKILL this many seconds later (a real cluster's default is 30)
KillWait=5
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def find(command: str) -> str | None:
    """`command` on PATH or in the system's sbin folders (not always on a user's PATH)."""
    return shutil.which(command) or shutil.which(command, path=os.pathsep.join(DAEMON_DIRS))


def why_slurm_cannot_run() -> str | None:
    """None when a SLURM cluster can be started here, else the reason."""
    missing = [name for name in DAEMONS if find(name) is None]
    if missing:
        return f"SLURM missing ({', '.join(missing)}): run tests/setup/install_slurm.sh"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root (SlurmUser=root)"
    return None


def _memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2


def _wait(condition, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-2000:] if log.exists() else "(no log)"
            raise TimeoutError(f"{what} after {timeout} s; {log}:\n{tail}")
        time.sleep(0.2)


def _node_idle(env: dict) -> bool:
    out = subprocess.run(
        [find("sinfo") or "sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env
    )
    return out.returncode == 0 and out.stdout.strip() == "idle"


@contextlib.contextmanager
def slurm_cluster():
    """Start munged, slurmctld and slurmd; yields the slurm.conf path (export it as SLURM_CONF)."""
    folder = Path(tempfile.mkdtemp(prefix="harness-slurm-"))
    for sub in ("munge", "state", "spool"):
        (folder / sub).mkdir(mode=0o700)
    conf = folder / "slurm.conf"
    host = socket.gethostname().split(".")[0]
    conf.write_text(
        CONF.format(
            host=host,
            folder=folder,
            ctld_port=free_port(),
            slurmd_port=free_port(),
            cpus=os.cpu_count(),
            memory_mb=_memory_mb(),
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = folder / "munge"
    key = munge / "munge.key"
    subprocess.run([find("mungekey"), "--create", "--keyfile", str(key)], check=True)
    munged = [find("munged"), "--force", "--socket", str(munge / "munge.socket")]
    munged += ["--key-file", str(key), "--pid-file", str(munge / "munged.pid")]
    munged += ["--log-file", str(munge / "munged.log"), "--seed-file", str(munge / "seed")]
    try:
        subprocess.run(munged, check=True, capture_output=True)
        subprocess.run([find("slurmctld"), "-f", str(conf)], check=True, env=env)
        subprocess.run([find("slurmd"), "-f", str(conf)], check=True, env=env)
        _wait(lambda: _node_idle(env), "the SLURM node is not idle", folder / "slurmd.log")
        yield conf
    finally:
        _stop(folder, conf, env)


def _stop(folder: Path, conf: Path, env: dict) -> None:
    """Cancel what is left, stop the SLURM daemons, then munged; remove the folder."""
    scancel, scontrol = find("scancel"), find("scontrol")
    # The jobs' processes outlive the daemons (slurmstepd is on its own): end them first.
    for how in ([], ["--signal=KILL"]):
        subprocess.run([scancel, *how, "--full", "--user", "root"], capture_output=True, env=env)
        with contextlib.suppress(TimeoutError):
            _wait(lambda: not _jobs_left(env), "jobs left", folder / "slurmd.log", timeout=20)
            break
    subprocess.run([scontrol, "shutdown"], capture_output=True, env=env, timeout=30)
    for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
        path = folder / pid_file
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(path.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            _wait(lambda pid=pid: not _alive(pid), f"pid {pid} still alive", path, timeout=15)
    shutil.rmtree(folder, ignore_errors=True)


def _jobs_left(env: dict) -> bool:
    out = subprocess.run(
        [find("squeue") or "squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env
    )
    return out.returncode == 0 and bool(out.stdout.strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
