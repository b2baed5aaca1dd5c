#!/usr/bin/env bash
# Start a single-node Slurm (Debian's slurmctld + slurmd + munge) with 4 fake GPUs, for tests/test_slurm.py.
# Needs root and the packages: apt-get install -y slurmctld slurmd slurm-client munge
set -euo pipefail
host=$(hostname -s)
cpus=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge
for i in 0 1 2 3; do [ -e /dev/fakegpu$i ] || mknod /dev/fakegpu$i c 1 3; done
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=trtflow-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
GresTypes=gpu
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=8000 Gres=gpu:4 State=UNKNOWN
PartitionName=gpu Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
echo "Name=gpu File=/dev/fakegpu[0-3]" > /etc/slurm/gres.conf
[ -s /etc/munge/munge.key ] || (dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null)
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
for _ in $(seq 60); do
  state=$(sinfo -h -o %t 2>/dev/null | head -n 1)
  case "$state" in idle*|mix*|alloc*) echo "slurm up: node $host $state"; exit 0 ;; esac
  sleep 1
done
echo "slurm did not come up (sinfo state: ${state:-none})" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
