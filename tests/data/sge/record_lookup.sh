#!/usr/bin/env bash
# Records the answers the translation in cluster_api/executors/sge.py relies on beyond
# record.sh: a job script whose #$ directives are the ones sge.directives() writes, the
# token in -A read back by name from qstat -j and qacct -j, the h_vmem kill, the qstat
# listing of a named job, qdel of an array task.  Run on the dev cluster after record.sh
# (or alone on a fresh one); writes lookup_*.txt / lookup_*.xml here.
set -euo pipefail
# A clean environment: the -V job below copies it into qstat -j's JB_env_list.
if [ -z "${RECORD_LOOKUP_CLEAN:-}" ]; then
  exec env -i RECORD_LOOKUP_CLEAN=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$HOME" LANG=C \
    bash "$0" "$@"
fi
OUT=$(realpath "${1:-$(dirname "$0")}")
WORK=$(mktemp -d /tmp/sge-lookup.XXXXXX)
cd "$WORK"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
: >"$OUT/lookup_transcript.txt"
transcript() {
  local rc=0
  "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  {
    printf '$ %s\n' "$*"
    printf -- '--- stdout\n'; cat "$WORK/out"
    printf -- '--- stderr\n'; cat "$WORK/err"
    printf -- '--- exit %s\n\n' "$rc"
  } >>"$OUT/lookup_transcript.txt"
}
wait_gone() { for _ in $(seq 1 600); do qstat | awk -v id="$1" '$1==id{f=1} END{exit !f}' || return 0; sleep 0.1; done; return 1; }
wait_acct() { for _ in $(seq 1 300); do qacct -j "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }

mkdir -p "$WORK/logs dir"
cat >directives.sh <<SCRIPT
#!/bin/bash
#\$ -N cap-lookup
#\$ -o "$WORK/logs dir/stdout.\$JOB_ID.log"
#\$ -e "$WORK/logs dir/stderr.\$JOB_ID.log"
#\$ -wd "$WORK"
#\$ -A cap-lookup.1
#\$ -pe smp 2
#\$ -l h_rt=00:01:00
#\$ -l h_vmem=512M
#\$ -S /bin/bash
#\$ -V
while [ ! -e release ]; do sleep 0.2; done
echo "task=\$SGE_TASK_ID nslots=\$NSLOTS"
SCRIPT
transcript qsub -terse directives.sh
J=$(tr -d '\n' <"$WORK/out")
sleep 3
qstat -xml >"$OUT/lookup_qstat_listing.xml"
qstat -j cap-lookup -xml >"$OUT/lookup_qstat_j_by_name.xml"
transcript qstat -j nosuch-name -xml
touch release
wait_gone "$J"
transcript qstat -j cap-lookup -xml
wait_acct "$J"
qacct -j cap-lookup >"$OUT/lookup_qacct_by_name.txt"
cat "$WORK/logs dir/stdout.$J.log" >>"$OUT/lookup_transcript.txt"
transcript qacct -j nosuch-name

# Memory kill: h_vmem 50M and a process that allocates more.
printf 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo done\n' >eat.sh
transcript qsub -terse -cwd -j y -N vmem -l h_vmem=50M eat.sh
V=$(tr -d '\n' <"$WORK/out")
wait_gone "$V"; wait_acct "$V"
qacct -j "$V" >"$OUT/lookup_qacct_h_vmem.txt"

# qdel of one running array task and of a whole array with tasks pending.
printf 'sleep 30\n' >sleep30.sh
transcript qsub -terse -cwd -j y -N arr -t 1-4 -tc 2 sleep30.sh
A=$(tr -d '\n' <"$WORK/out"); A=${A%%.*}
sleep 4
qstat -xml >"$OUT/lookup_qstat_array_tc.xml"
transcript qdel "$A.1"
transcript qdel "$A"
transcript qdel "$A" 99999

# qacct takes one job per call: "-j 1,2" reads as job 1, a second -j replaces the first;
# -b (start time) leaves out jobs that never started; -j takes a name pattern.
transcript qacct -j "1,$V"
transcript qacct -j 1 -j "$V"
transcript qacct -j 'cap-*'

# A dependant held (-h) on top of -hold_jid, released by qrls; -hold_jid of an id that
# does not exist (or has finished) is accepted and ignored.
printf 'exit 0\n' >ok.sh
transcript qsub -terse -cwd -j y -N dep -hold_jid 1 -h ok.sh
D=$(tr -d '\n' <"$WORK/out")
sleep 2
transcript qstat
transcript qrls "$D"
transcript qrls 99999
transcript qsub -terse -cwd -j y -N nodep -hold_jid 99999 ok.sh

# The #$ parser: double quotes group words, every quote character inside is dropped (so
# the job runs in "/q/its dir"), $HOME is expanded in -wd at run time, backslash and % stay.
mkdir -p "$WORK/it's dir" "$WORK/w\$HOME" "$WORK/b\\s"
for line in "#\$ -wd \"$WORK/it's dir\"" "#\$ -wd \"$WORK/w\$HOME\"" "#\$ -wd \"$WORK/b\\s\"" \
    "#\$ -N 1abc" "#\$ -A \"tok with space\"" "#\$ -A a:b"; do
  printf '#!/bin/bash\n%s\npwd\n' "$line" >probe.sh
  printf '# probe.sh: %s\n' "$line" >>"$OUT/lookup_transcript.txt"
  transcript qsub -terse -j y -o "$WORK/" probe.sh
done
sleep 4
transcript qstat
for j in $(qstat | awk '$5 ~ /E/ {print $1}'); do
  qstat -j "$j" | grep -E '^(cwd|error reason)' >>"$OUT/lookup_transcript.txt"
  transcript qdel "$j"
done
for f in "$WORK"/*/probe.sh.o* "$WORK"/probe.sh.o*; do [ -e "$f" ] && printf '%s: %s\n' "$f" "$(cat "$f")" >>"$OUT/lookup_transcript.txt"; done
