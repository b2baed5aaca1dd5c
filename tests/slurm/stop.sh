#!/usr/bin/env bash
# Stop the test Slurm started by start.sh.
pkill -x slurmd || true
pkill -x slurmctld || true
pkill -x munged || true
