# shellcheck shell=bash
# dev-daemons.sh: what the dev-cluster scripts share (sourced, not run): logging, the lock,
# pid bookkeeping that never signals a process that is not ours, apt installs, the
# up/down/status entry point.
#
# The sourcing script sets PROG, STATE_DIR and PACKAGES, defines dump_logs (the logs that
# could explain a failure) and cmd_up, cmd_down and cmd_status, and ends with
# `dev_main "$@"`.  A daemon whose name alone does not identify it (sshd: the system runs
# one too) records the part of its command line that does in DAEMON_CMDLINE[name].

declare -A DAEMON_CMDLINE=()

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }

die() { log "ERROR: $*"; dump_logs; exit 1; }

# tail_logs FILE...: the end of each file that has anything in it.
tail_logs() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf -- '---- last 15 lines of %s\n' "$f" >&2
    tail -n 15 "$f" >&2
  done
}

# require_root WHY: the script installs packages and starts daemons.
require_root() {
  [[ $(id -u) == 0 ]] || { log "ERROR: must run as root ($1)"; exit 2; }
}

# Serialise concurrent up/down calls (parallel CI steps, a contributor's second terminal).
# fd 9 is closed in every daemon we start, so no daemon keeps the lock.
take_lock() {
  mkdir -p "$STATE_DIR"
  chmod 0755 "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  flock -w 120 9 || { log "ERROR: another $PROG holds $STATE_DIR/lock"; exit 1; }
}

now() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ------------------------------------------------------------------ pid bookkeeping
# ours NAME: true if STATE_DIR/NAME.pid names a live process whose comm is NAME (and whose
# command line holds DAEMON_CMDLINE[NAME] when set).  A pid that was once ours and has
# since been reused (after a crash or a reboot) is never taken for ours, so never signalled.
ours() {
  local pidfile=$STATE_DIR/$1.pid pid cmdline
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
  [[ -n ${DAEMON_CMDLINE[$1]:-} ]] || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"${DAEMON_CMDLINE[$1]}"* ]]
}

our_pid() { cat "$STATE_DIR/$1.pid"; }

# start_daemon NAME CMD...: run CMD detached; CMD must end up exec'ing the daemon NAME in
# the foreground (no forking wrapper), so the recorded pid is the daemon's.  Its output
# goes to STATE_DIR/NAME.out.
start_daemon() {
  local name=$1; shift
  if ours "$name"; then
    log "$name already running (pid $(our_pid "$name"))"
    return 0
  fi
  rm -f "$STATE_DIR/$name.pid"
  (
    # Close every inherited descriptor above stderr: the lock (fd 9), CI runner pipes, a
    # terminal's extra fds.  A daemon keeping a pipe open (munged keeps whatever it
    # inherits) makes a CI step that captured our output hang until the daemon dies.
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if (( fd > 2 )); then eval "exec ${fd}>&-"; fi
    done
    exec setsid "$@"
  ) </dev/null >"$STATE_DIR/$name.out" 2>&1 &
  echo "$!" >"$STATE_DIR/$name.pid"
  # A wrapper (env, setpriv) replaces itself with the daemon: wait for that, and give an
  # immediately failing daemon (bad config, port in use) time to die, so the error is
  # reported here, with its output, rather than as a timeout later.
  for _ in $(seq 20); do ours "$name" && break; sleep 0.1; done
  sleep 0.3
  ours "$name" || die "$name exited right after start ($*)"
  log "started $name (pid $(our_pid "$name"))"
}

# stop_daemon NAME [SECONDS]: TERM, wait (15 s by default), then KILL.  Only ever our
# recorded pid.
stop_daemon() {
  local name=$1 limit=${2:-15} pidfile=$STATE_DIR/$1.pid pid
  if ! ours "$name"; then
    if [[ -e $pidfile ]]; then
      log "$name: recorded pid is gone (or reused by another program); forgetting it"
      rm -f "$pidfile"
    fi
    return 0
  fi
  pid=$(our_pid "$name")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $(( limit * 10 ))); do ours "$name" || break; sleep 0.1; done
  if ours "$name"; then
    log "$name (pid $pid) ignored SIGTERM for ${limit} s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do ours "$name" || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  log "stopped $name (pid $pid)"
}

# wait_until SECONDS WHAT CMD...: poll CMD (quietly) until it succeeds.
wait_until() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || die "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}

# ------------------------------------------------------------------ packages
missing_packages() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || echo "$pkg"
  done
}

# apt_install PKG...: install without questions.  The lists are always refreshed (a fresh
# container often has none, or stale ones naming versions the mirror no longer carries);
# one retry for a flaky network; another apt run's lock is waited for.
apt_install() {
  local t0 attempt
  t0=$(now)
  log "installing $* (apt log: $STATE_DIR/apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=300
             -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  for attempt in 1 2; do
    if "${apt[@]}" update >"$STATE_DIR/apt.log" 2>&1 \
       && "${apt[@]}" install --no-install-recommends "$@" >>"$STATE_DIR/apt.log" 2>&1; then
      log "packages installed in $(elapsed_since "$t0")s"
      return 0
    fi
    (( attempt == 2 )) || { log "apt-get failed; retrying once"; sleep 3; }
  done
  tail -n 30 "$STATE_DIR/apt.log" >&2
  die "apt-get could not install $*"
}

# ------------------------------------------------------------------ entry point
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
}

dev_main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}
