#!/bin/sh
# SLURM and munge for the tests' single-node cluster (tests/slurm_cluster.py), from the system's
# packages when they are missing (Debian/Ubuntu: about a minute). Idempotent: nothing to do when
# slurmctld is there. Without root or apt-get it says so and the SLURM tests skip with the reason.
PATH="$PATH:/usr/sbin:/sbin"
if command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_slurm.sh: SLURM is missing and cannot be installed here (needs root and apt-get):" \
        "the SLURM tests will skip; install slurm-wlm and munge to run them"
    exit 0
fi
echo "install_slurm.sh: installing slurm-wlm and munge for the SLURM tests"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
