#!/usr/bin/env bash
# Re-records the files of this directory from a real Grid Engine (see README.md).
#
#   bash scripts/sge-dev-cluster.sh down && bash scripts/sge-dev-cluster.sh up
#   bash tests/data/sge/record.sh [OUT_DIR]      # default: this directory
#
# Needs a freshly started dev cluster (job numbers from 1, empty accounting, queue idle)
# and takes about two minutes.  Job ids differ between runs; jobs.txt maps each job's
# role to its id.  The script disables and re-enables all.q for a moment.
set -euo pipefail

OUT=$(realpath "${1:-$(dirname "$0")}")
WORK=$(mktemp -d /tmp/sge-record.XXXXXX)
HOST=$(SGE_ROOT=/var/lib/gridengine /usr/lib/gridengine/gethostname -aname)
cd "$WORK"
# The submitter's PATH is recorded in every job (sge_o_path): keep it plain.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p "$OUT"
: >"$OUT/jobs.txt"
for f in qsub_terse qdel qstat_unknown qstat_j_eqw qstat_f_during_eqw qacct_not_found; do : >"$OUT/$f.txt"; done

say() { printf '[record] %s\n' "$*" >&2; }
now() { date +%s.%N; }

# transcript FILE CMD...: append the command, its stdout, its stderr and its exit code.
transcript() {
  local file=$OUT/$1 rc=0; shift
  "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  {
    printf '$ %s\n' "$*"
    printf -- '--- stdout\n'; cat "$WORK/out"
    printf -- '--- stderr\n'; cat "$WORK/err"
    printf -- '--- exit %s\n\n' "$rc"
  } >>"$file"
}

# capture FILE CMD...: the command's stdout, verbatim (it must succeed).
capture() { local file=$OUT/$1; shift; "$@" >"$file"; }

# remember ROLE ARGS: note the id that qsub just printed (into $WORK/out) in jobs.txt
# under ROLE, and print its job number.
remember() {
  local out
  out=$(<"$WORK/out")
  printf '%-22s %-10s qsub -terse -cwd -j y %s\n' "$1" "$out" "$2" >>"$OUT/jobs.txt"
  printf '%s\n' "${out%%.*}"
}

# submit ROLE QSUB-ARGS...: qsub -terse (must succeed), remembered under ROLE.
submit() {
  local role=$1; shift
  qsub -terse -cwd -j y "$@" >"$WORK/out"
  remember "$role" "$*"
}

state_of() { qstat | awk -v id="$1" '$1 == id { print $5; exit }'; }
# wait_for WHAT CMD...: poll CMD until it succeeds (at most 120 s).
wait_for() {
  local what=$1 deadline=$(( $(date +%s) + 120 )); shift
  until "$@"; do
    (( $(date +%s) < deadline )) || { say "timed out waiting for $what"; exit 1; }
    sleep 0.2
  done
}
in_state() { [[ $(state_of "$1") =~ ^($2)$ ]]; }
gone() { [[ -z $(state_of "$1") ]]; }
running_tasks() { [[ $(qstat | awk -v id="$1" '$1 == id && $5 == "r"' | wc -l) -ge $2 ]]; }
accounted() { qacct -j "$1" >/dev/null 2>&1; }

# Scripts (run by /bin/sh: the queue's shell_start_mode is posix_compliant).
printf 'exit 0\n' >ok.sh
printf 'exit 3\n' >exit3.sh
printf 'exit 100\n' >exit100.sh
printf 'while [ ! -e release ]; do sleep 0.2; done\n' >wait.sh
printf 'sleep 60\n' >sleep60.sh
printf 'sleep 2\n' >sleep2.sh
# shellcheck disable=SC2016  # expanded by the job, not here
printf 'sleep 2\n[ "$SGE_TASK_ID" != 2 ]\n' >array.sh
# Exits 99 on its first run only: shows the re-queue, then a normal end.
printf 'if [ ! -e ran99 ]; then touch ran99; exit 99; fi\nexit 0\n' >exit99.sh

say "submission and pending states (queue disabled so nothing starts)"
capture qstat_empty.xml qstat -xml
qmod -d "all.q@$HOST" >/dev/null
transcript qsub_terse.txt qsub -terse -cwd -j y -N plain wait.sh
plain=$(remember plain "-N plain wait.sh")
transcript qsub_terse.txt qsub -terse -cwd -j y -t 1-3 -tc 2 -N arr sleep2.sh
arr=$(remember array_1_3_tc2 "-t 1-3 -tc 2 -N arr sleep2.sh")
transcript qsub_terse.txt qsub -terse -cwd -j y -t 2-6:2 -N step ok.sh
transcript qsub_terse.txt sh -c 'echo "exit 0" | qsub -terse -cwd -j y'
transcript qsub_terse.txt qsub -terse -cwd -j y -q nosuch.q ok.sh
transcript qsub_terse.txt qsub -terse -cwd -j y -l nosuchres=1 ok.sh
transcript qsub_terse.txt qsub -terse -cwd -j y /nonexistent.sh
held=$(submit held -h -N held ok.sh)
capture qstat_pending.xml qstat -xml
capture qstat_pending_gd.xml qstat -g d -xml
capture qstat_j_pending.xml qstat -j "$plain" -xml
qmod -e "all.q@$HOST" >/dev/null

say "running, mixed and array-element states"
wait_for "plain to run" in_state "$plain" r
wait_for "two array tasks to run" running_tasks "$arr" 2
capture qstat_mixed.xml qstat -xml
capture qstat_mixed_gd.xml qstat -g d -xml
capture qstat_j_running.xml qstat -j "$plain" -xml
capture qstat_j_array.xml qstat -j "$arr" -xml

say "qdel answers"
transcript qdel.txt qdel "$plain"
transcript qdel.txt qdel "$held"
wait_for "plain to leave qstat" gone "$plain"
wait_for "the array to finish" gone "$arr"
transcript qdel.txt qdel "$plain"
transcript qdel.txt qdel 9999
transcript qstat_unknown.txt qstat -j 9999
transcript qstat_unknown.txt qstat -j 9999 -xml
transcript qstat_unknown.txt qstat -j "$plain" -xml
transcript qstat_unknown.txt qstat -j "$plain"

say "running only"
rm -f release
runner=$(submit running -N running wait.sh)
wait_for "running to run" in_state "$runner" r
capture qstat_running.xml qstat -xml
touch release

say "endings"
ok=$(submit exit0 -N exit0 ok.sh)
fail3=$(submit exit3 -N exit3 exit3.sh)
e99=$(submit exit99_once -N exit99 exit99.sh)
e100=$(submit exit100 -N exit100 exit100.sh)
wall=$(submit walltime_5s -N walltime -l h_rt=0:0:5 sleep60.sh)
arrfail=$(submit array_task2_fails -t 1-3 -N arrfail array.sh)
dep3=$(submit hold_jid_on_exit3 -N dep3 -hold_jid "$fail3" ok.sh)
dep100=$(submit hold_jid_on_exit100 -N dep100 -hold_jid "$e100" ok.sh)
badwd=$(submit bad_wd_eqw -N badwd -wd /nonexistent/dir ok.sh)
wait_for "exit100 to reach Eqw" in_state "$e100" Eqw
wait_for "badwd to reach Eqw" in_state "$badwd" Eqw
wait_for "dep3 to finish" gone "$dep3"
capture qstat_eqw.xml qstat -xml
transcript qstat_j_eqw.txt qstat -j "$e100"
transcript qstat_j_eqw.txt qstat -j "$badwd"
capture qstat_j_eqw.xml qstat -j "$e100" -xml
transcript qstat_f_during_eqw.txt qstat -f
# Both failures are accounted while the jobs still sit in Eqw.
wait_for "qacct -j $e100" accounted "$e100"
wait_for "qacct -j $badwd" accounted "$badwd"
capture qacct_exit100_while_eqw.txt qacct -j "$e100"
capture qacct_bad_wd_while_eqw.txt qacct -j "$badwd"
transcript qdel.txt qdel "$e100" "$badwd"
# Does deleting the exit-100 job release its dependant?  Give the scheduler a few passes.
sleep 5
for id in "$ok" "$fail3" "$e99" "$wall" "$arrfail" "$dep3"; do wait_for "job $id to end" gone "$id"; done
capture qstat_after_qdel_of_exit100.xml qstat -xml

say "accounting (flushed every 15 s)"
for id in "$plain" "$ok" "$fail3" "$e99" "$e100" "$wall" "$arrfail" "$dep3" "$badwd"; do
  wait_for "qacct -j $id" accounted "$id"
done
capture qacct_exit0.txt qacct -j "$ok"
capture qacct_exit3.txt qacct -j "$fail3"
capture qacct_exit99_once.txt qacct -j "$e99"
capture qacct_exit100_after_qdel.txt qacct -j "$e100"
capture qacct_walltime.txt qacct -j "$wall"
capture qacct_array_task2_fails.txt qacct -j "$arrfail"
capture qacct_hold_jid_on_exit3.txt qacct -j "$dep3"
capture qacct_bad_wd_after_qdel.txt qacct -j "$badwd"
capture qacct_qdel_running.txt qacct -j "$plain"
transcript qacct_not_found.txt qacct -j "$held"
transcript qacct_not_found.txt qacct -j 9999
qdel "$dep100" >/dev/null 2>&1 || true

say "qacct lag: seconds from leaving qstat to appearing in qacct, for five jobs"
{
  printf '# job  left_qstat_after_s  in_qacct_after_s  lag_s   (from qsub; polled every 0.1 s)\n'
  for _ in 1 2 3 4 5; do
    t0=$(now)
    id=$(qsub -terse -cwd -j y -N lag ok.sh)
    until gone "$id"; do sleep 0.1; done
    t_gone=$(now)
    until accounted "$id"; do sleep 0.1; done
    t_acct=$(now)
    awk -v id="$id" -v a="$t0" -v g="$t_gone" -v c="$t_acct" \
      'BEGIN { printf "%-5s %18.1f %17.1f %7.1f\n", id, g - a, c - a, c - g }'
    sleep 3
  done
} >"$OUT/qacct_lag.txt"

say "done: $OUT (work dir $WORK)"
