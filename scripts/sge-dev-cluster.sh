#!/usr/bin/env bash
# sge-dev-cluster.sh: a throw-away, single-host Son of Grid Engine "cluster" on this
# machine, for CI and for contributors who want to run the Grid Engine integration tests.
#
#   scripts/sge-dev-cluster.sh up      install (if needed), configure, start, wait for the queue
#   scripts/sge-dev-cluster.sh down    stop the daemons that `up` started (and nothing else)
#   scripts/sge-dev-cluster.sh status  exit 0 if qmaster answers and the queue takes jobs
#
# Assumes Debian 12 / Ubuntu-like apt, root, and no systemd (containers, CI runners):
# sge_qmaster and sge_execd run in the foreground (SGE_ND=1), detached with setsid, and
# their pids are recorded so `down` never has to kill anything by name.  Tested with
# Debian 12's gridengine 8.1.9+dfsg-10.  `up` and `down` are idempotent.  Coexists with
# scripts/slurm-dev-cluster.sh: SGE uses ports 6444/6445 (Slurm 6817/6818) and its own
# host name (the machine's, with "localhost" as an SGE alias).
#
# The cluster: one queue all.q on this host, root may run jobs (min_uid/min_gid 0), no load
# thresholds (a busy CI box never puts the queue into alarm state), a scheduler pass every
# second and one second after each submit or job end, no login shells, and a parallel
# environment "smp" ($pe_slots) for multi-slot jobs (`qsub -pe smp N`).  Accounting keeps
# Debian's default flush_time of 15 s, so `qacct -j` lags a finished job by up to ~15 s,
# like a real site.
#
# Environment knobs (all optional):
#   SGE_SLOTS=16             slots of all.q on this host (jobs at once).  May exceed the
#                            real core count: many small test jobs run concurrently.
#   SGE_DEV_STATE_DIR=/run/sge-dev-cluster
#                            pid files, daemon stdout/stderr, apt log, rendered config, lock.
#   SGE_DEV_TIMEOUT=60       seconds to wait for each daemon / for the queue.
#   SGE_DEV_KEEP_STATE=0     1: keep the qmaster spool (jobs, job-number counter) and the
#                            accounting file when qmaster is (re)started.  Default: start
#                            clean (job numbers restart at 1, so old accounting records
#                            would be ambiguous: qacct would report the earlier job N).
set -euo pipefail
# Without job control a background subshell stays in our process group, so it is not a
# group leader and `setsid` can call setsid(2) directly instead of forking: $! is then
# the daemon's own pid.  The pid bookkeeping depends on it.
set +m

readonly PROG=${0##*/}
readonly SLOTS=${SGE_SLOTS:-16}
readonly STATE_DIR=${SGE_DEV_STATE_DIR:-/run/sge-dev-cluster}
readonly TIMEOUT=${SGE_DEV_TIMEOUT:-60}
readonly KEEP_STATE=${SGE_DEV_KEEP_STATE:-0}

# Debian's layout (the gridengine-* postinst scripts and /usr/share/gridengine/default-bootstrap).
readonly SGE_ROOT=/var/lib/gridengine
readonly SGE_CELL=default
readonly COMMON=$SGE_ROOT/$SGE_CELL/common
readonly SPOOL=/var/spool/gridengine
readonly QMASTER_SPOOL=$SPOOL/qmaster
readonly SPOOL_DB=$SPOOL/spooldb
readonly EXECD_SPOOL=$SPOOL/execd
readonly ACCOUNTING=$COMMON/accounting
readonly ADMIN_USER=sgeadmin
readonly QUEUE=all.q
readonly PACKAGES=(gridengine-master gridengine-exec gridengine-client gridengine-common)
# Stop order for `down`: execution daemon, then qmaster.
readonly DAEMONS=(sge_execd sge_qmaster)
export SGE_ROOT SGE_CELL
# shellcheck source=scripts/lib/dev-daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/dev-daemons.sh"

# The execd's messages file lives under its host name; resolved lazily (needs the packages).
sge_host_name() { /usr/lib/gridengine/gethostname -aname 2>/dev/null || hostname; }

# Show the end of every log that this run wrote and that could explain a failure.
dump_logs() {
  local f host fresh=()
  host=$(sge_host_name 2>/dev/null || true)
  for f in "$STATE_DIR"/sge_qmaster.out "$STATE_DIR"/sge_execd.out "$QMASTER_SPOOL/messages" \
           "$EXECD_SPOOL/$host/messages" "$STATE_DIR/configure.log"; do
    [[ $STATE_DIR/run-started -nt $f ]] || fresh+=("$f")
  done
  tail_logs "${fresh[@]}"
}

validate_knobs() {
  local name value
  for name in SGE_SLOTS SGE_DEV_TIMEOUT; do
    value=${!name:-1}
    [[ $value =~ ^[0-9]+$ ]] || { log "ERROR: $name must be a non-negative integer, got '$value'"; exit 2; }
  done
  [[ $KEEP_STATE == [01] ]] || { log "ERROR: SGE_DEV_KEEP_STATE must be 0 or 1, got '$KEEP_STATE'"; exit 2; }
  (( SLOTS > 0 )) || { log "ERROR: SGE_SLOTS must be at least 1"; exit 2; }
}

# ------------------------------------------------------------------ cluster probes
qmaster_answers() { timeout 10 qstat -u '*' >/dev/null 2>&1; }
# The queue instance line of `qstat -f` is "all.q@host BIP 0/0/16 0.42 lx-amd64 [states]":
# a sixth field is a state (u = execd unheard, a = alarm, E = error, d = disabled, ...).
queue_states() { timeout 10 qstat -f -q "$QUEUE@$(sge_host_name)" 2>/dev/null | awk -v q="$QUEUE@" 'index($1, q) == 1 { print ($6 == "" ? "ok" : $6); exit }'; }
queue_usable() { [[ $(queue_states) == ok ]]; }

# ------------------------------------------------------------------ up: install
install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  (( ${#missing[@]} )) || return 0
  local host
  host=$(hostname)
  # Answer the packages' debconf questions up front: configure a cell "default" whose
  # master is this host (the postinst then runs init_cluster), and never prompt.
  debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridenginemaster string $host
EOF
  # Where policy-rc.d does not forbid it, the postinst would start both daemons through
  # /etc/init.d before we configured anything; this file (kept by ucf, read by the init
  # scripts and the client wrapper) says "do not", since this script starts them.
  if [[ ! -e /etc/default/gridengine ]]; then
    cat >/etc/default/gridengine <<EOF
# Written by scripts/sge-dev-cluster.sh: the daemons are started by that script.
SGE_START_MASTERD=no
SGE_START_EXECD=no
SGE_ROOT=$SGE_ROOT
SGE_CELL=$SGE_CELL
EOF
  fi
  export UCF_FORCE_CONFFOLD=1
  apt_install "${missing[@]}"
}

# ------------------------------------------------------------------ up: configure
# Everything `up` applies, in one text: the fast path compares it with what was applied.
render_settings() {
  printf 'host=%s\nslots=%s\n' "$(sge_host_name)" "$SLOTS"
}

# Files read by every daemon and client at start: who the master is, and the name
# "localhost" as an alias of this host.  A client connecting over 127.0.0.1 is resolved
# to "localhost"; without the alias qmaster refuses it ("access denied (client IP
# resolved to host name "localhost". This is not identical to clients host name ...)").
write_host_files() {
  local host=$1
  mkdir -p "$COMMON"
  printf '%s\n' "$host" >"$COMMON/act_qmaster"
  if [[ $host == localhost ]]; then
    : >"$COMMON/host_aliases"
  else
    printf '%s localhost\n' "$host" >"$COMMON/host_aliases"
  fi
  chown "$ADMIN_USER:$ADMIN_USER" "$COMMON/act_qmaster" "$COMMON/host_aliases"
  chmod 0644 "$COMMON/act_qmaster" "$COMMON/host_aliases"
  mkdir -p /run/gridengine "$EXECD_SPOOL"
  chown "$ADMIN_USER:$ADMIN_USER" /run/gridengine "$EXECD_SPOOL"
}

# A clean cell, as the gridengine-master postinst makes it: empty spool (jobs and the
# job-number counter go), default global config, complexes, usersets and managers.
reset_cell() {
  log "resetting the cell (spool, accounting file, execd spool)"
  find "$SPOOL_DB" "$QMASTER_SPOOL" "$EXECD_SPOOL" -mindepth 1 -delete 2>/dev/null || true
  mkdir -p "$SPOOL_DB" "$QMASTER_SPOOL/job_scripts" "$EXECD_SPOOL"
  chown "$ADMIN_USER:$ADMIN_USER" "$SPOOL_DB" "$QMASTER_SPOOL" "$QMASTER_SPOOL/job_scripts" "$EXECD_SPOOL"
  rm -f "$ACCOUNTING"
  setpriv --reuid="$ADMIN_USER" --regid="$ADMIN_USER" --init-groups \
    /usr/share/gridengine/scripts/init_cluster "$SGE_ROOT" "$SGE_CELL" "$SPOOL_DB" "$ADMIN_USER" \
    >"$STATE_DIR/init_cluster.log" 2>&1 \
    || { cat "$STATE_DIR/init_cluster.log" >&2; die "init_cluster failed"; }
}

# edit_attrs FILE NAME=VALUE...: set attributes in a qconf listing ("name  value" lines).
edit_attrs() {
  local file=$1 pair; shift
  for pair in "$@"; do
    local name=${pair%%=*} value=${pair#*=}
    if grep -q "^${name}[[:space:]]" "$file"; then
      sed -i "s|^${name}[[:space:]].*|$name $value|" "$file"
    else
      printf '%s %s\n' "$name" "$value" >>"$file"
    fi
  done
}

# qconf_load ADD MODIFY SHOW NAME FILE: add the object NAME from FILE, or modify it if it
# already exists (a kept spool).
qconf_load() {
  local add=$1 modify=$2 show=$3 name=$4 file=$5
  if qconf "$show" "$name" >/dev/null 2>&1; then
    qconf "$modify" "$file"
  else
    qconf "$add" "$file"
  fi
}

# Apply the cluster configuration through qmaster (which must answer).
configure_cell() {
  local host=$1 dir=$STATE_DIR/conf
  rm -rf "$dir"; mkdir -p "$dir"
  {
    # The host submits and administers (a kept spool already has it as both).
    qconf -ss 2>/dev/null | grep -qxF "$host" || qconf -as "$host"
    qconf -sh 2>/dev/null | grep -qxF "$host" || qconf -ah "$host"

    # Global config.  The file name is the configuration's name for -Mconf.
    qconf -sconf global >"$dir/global"
    # min_uid/min_gid 0: root's jobs run (otherwise they fail "before job" and the queue
    # goes into error state).  login_shells none: a job never sources a login profile.
    # max_unheard 60 s: a dead execd shows as "u" within a minute, not five.
    edit_attrs "$dir/global" min_uid=0 min_gid=0 login_shells=none max_unheard=00:01:00 \
      load_report_time=00:00:10
    qconf -Mconf "$dir/global"

    # Scheduler: a pass every second and one second after each submit and each job end
    # (defaults: 15 s and never), so jobs start within ~1-2 s.
    qconf -ssconf >"$dir/sched"
    edit_attrs "$dir/sched" schedule_interval=0:0:1 flush_submit_sec=1 flush_finish_sec=1 \
      job_load_adjustments=NONE load_adjustment_decay_time=0:0:0
    qconf -Msconf "$dir/sched"

    # Parallel environment for multi-slot jobs on one host.
    cat >"$dir/smp" <<EOF
pe_name            smp
slots              99999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
    qconf_load -Ap -Mp -sp smp "$dir/smp"

    # The queue, from qconf's template.
    qconf -sq >"$dir/$QUEUE"
    edit_attrs "$dir/$QUEUE" qname="$QUEUE" hostlist="$host" slots="$SLOTS" pe_list=smp \
      load_thresholds=NONE suspend_thresholds=NONE
    qconf_load -Aq -Mq -sq "$QUEUE" "$dir/$QUEUE"
  } >"$STATE_DIR/configure.log" 2>&1 || die "configuring the cell through qconf failed (see $STATE_DIR/configure.log)"
  render_settings >"$STATE_DIR/settings"
}

# ------------------------------------------------------------------ subcommands
cmd_up() {
  require_root "installs packages, starts daemons"
  validate_knobs
  take_lock
  touch "$STATE_DIR/run-started"
  local t0
  t0=$(now)

  # Fast path: everything already running as we configured it -> no-op.
  if ours sge_qmaster && ours sge_execd && [[ -f $STATE_DIR/settings \
     && $(<"$STATE_DIR/settings") == "$(render_settings)" ]] && queue_usable; then
    log "already up (queue $QUEUE@$(sge_host_name) takes jobs); nothing to do"
    return 0
  fi

  install_packages
  local host
  host=$(sge_host_name)

  local fresh_qmaster=0
  if ! ours sge_qmaster; then
    if qmaster_answers; then
      die "an sge_qmaster not started by this script answers on this host; stop it first (e.g. /etc/init.d/gridengine-master stop)"
    fi
    # An execd of ours without our qmaster is from an older cell: restart it with the new one.
    stop_daemon sge_execd 15
    write_host_files "$host"
    if [[ $KEEP_STATE != 1 || ! -e $SPOOL_DB/sge ]]; then
      reset_cell
    fi
    start_daemon sge_qmaster env SGE_ND=1 /usr/sbin/sge_qmaster
    fresh_qmaster=1
  fi
  wait_until "$TIMEOUT" "sge_qmaster to answer qstat" qmaster_answers

  if [[ $fresh_qmaster == 1 || ! -f $STATE_DIR/settings \
        || $(<"$STATE_DIR/settings") != "$(render_settings)" ]]; then
    configure_cell "$host"
    # The execd reads the global configuration when it starts.
    stop_daemon sge_execd 15
  fi

  start_daemon sge_execd env SGE_ND=1 /usr/sbin/sge_execd
  # Wait for the execd to report (state "u" goes).  A queue left in error state (E, e.g.
  # by a job that failed "before job" on the host) or disabled (d) is put back once.
  local deadline state cleared=0
  deadline=$(( $(date +%s) + TIMEOUT ))
  until queue_usable; do
    state=$(queue_states || true)
    if [[ $cleared == 0 && $state =~ [Ed] ]]; then
      log "queue $QUEUE@$host is in state '$state'; clearing and enabling it"
      qmod -c "$QUEUE@$host" >/dev/null 2>&1 || true
      qmod -e "$QUEUE@$host" >/dev/null 2>&1 || true
      cleared=1
    fi
    (( $(date +%s) < deadline )) || die "queue $QUEUE@$host does not take jobs after ${TIMEOUT}s (state '${state:-unknown}')"
    sleep 0.2
  done
  log "cluster up in $(elapsed_since "$t0")s: queue $QUEUE@$host takes jobs, $SLOTS slots"
}

cmd_down() {
  require_root "installs packages, starts daemons"
  if [[ ! -d $STATE_DIR ]]; then
    log "nothing to stop ($STATE_DIR does not exist)"
    return 0
  fi
  take_lock
  # Delete jobs first: a running job's shepherd outlives sge_execd and would be left behind.
  if ours sge_qmaster && ours sge_execd && qmaster_answers; then
    if [[ -n $(qstat -u '*' 2>/dev/null) ]]; then
      log "deleting remaining jobs"
      qdel -f -u '*' >/dev/null 2>&1 || true
      for _ in $(seq 100); do
        [[ -z $(qstat -u '*' 2>/dev/null) ]] && break
        sleep 0.2
      done
    fi
  fi
  stop_daemon sge_execd 15
  # qmaster's controlled shutdown takes several seconds.
  stop_daemon sge_qmaster 30
  rm -f "$STATE_DIR/settings"
  log "down"
}

cmd_status() {
  if ! qmaster_answers; then
    echo "sge_qmaster: not answering"
    return 1
  fi
  local state
  state=$(queue_states || true)
  echo "sge_qmaster: up; queue $QUEUE@$(sge_host_name): ${state:-absent}"
  local name
  for name in "${DAEMONS[@]}"; do
    if ours "$name"; then echo "$name: pid $(our_pid "$name") (started by $PROG)"; fi
  done
  queue_usable
}

dev_main "$@"
