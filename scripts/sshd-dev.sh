#!/usr/bin/env bash
# sshd-dev.sh: a private OpenSSH server on 127.0.0.1, so the remote (SSH) tests run
# against a real sshd without touching the system's own.
#
#   scripts/sshd-dev.sh up      install (if needed), configure, start, wait until a login works
#   scripts/sshd-dev.sh down    stop the sshd that `up` started (and its sessions), nothing else
#   scripts/sshd-dev.sh status  exit 0 if `ssh -F <state>/client/ssh_config capi-dev` logs in
#
# What `up` makes (everything under the state directory, printed at the end):
#   sshd_config, host/ssh_host_ed25519_key   the server's own config and host key
#   sshd.pid, sshd.log                       its pid and its LogLevel VERBOSE log: each
#                                            connection logs "Accepted publickey ... port P",
#                                            each command "Starting session: ... port P"
#   client/id_ed25519                        the only key allowed in (key-only login)
#   client/known_hosts                       the server's host key, for StrictHostKeyChecking
#   client/ssh_config                        `Host capi-dev` (direct) and `Host capi-dev-jump`
#                                            (the same server reached through ProxyJump capi-dev),
#                                            BatchMode yes: use it with `ssh -F`
# and a local unprivileged user capi-remote (real home, no password) whose
# ~/.ssh/authorized_keys holds the client key, and only it (so one state directory per
# machine: `up` with another SSHD_DEV_STATE_DIR takes the login over).  Commands run through
# it run as capi-remote.
#
# The server listens on 127.0.0.1 only, never reads /etc/ssh/sshd_config and never
# starts, stops or reconfigures the system's ssh service.  Installing openssh-server where
# it is missing would let Debian start that service, so the install runs under a
# policy-rc.d that forbids it (unless the host already has one).  Needs root and apt.
# Tested with Debian 12's OpenSSH 9.2p1.  `up` and `down` are idempotent.
#
# Environment knobs (all optional):
#   SSHD_DEV_PORT=2222       port on 127.0.0.1 (2222: above 1024, not an OpenSSH or
#                            Slurm default; 6817/6818 are slurm-dev-cluster's).
#   SSHD_DEV_STATE_DIR=/run/sshd-dev
#   SSHD_DEV_TIMEOUT=30      seconds to wait for the first login after starting.
set -euo pipefail
# Without job control the background subshell is not a process-group leader, so setsid
# execs the daemon in place and $! is sshd's own pid (see slurm-dev-cluster.sh).
set +m

readonly PROG=${0##*/}
readonly PORT=${SSHD_DEV_PORT:-2222}
readonly STATE_DIR=${SSHD_DEV_STATE_DIR:-/run/sshd-dev}
readonly TIMEOUT=${SSHD_DEV_TIMEOUT:-30}
readonly REMOTE_USER=capi-remote
readonly SSHD=/usr/sbin/sshd
readonly SSHD_CONFIG=$STATE_DIR/sshd_config
readonly HOST_KEY=$STATE_DIR/host/ssh_host_ed25519_key
readonly PID_FILE=$STATE_DIR/sshd.pid
readonly LOG_FILE=$STATE_DIR/sshd.log
readonly CLIENT_DIR=$STATE_DIR/client
readonly CLIENT_KEY=$CLIENT_DIR/id_ed25519
readonly KNOWN_HOSTS=$CLIENT_DIR/known_hosts
readonly CLIENT_CONFIG=$CLIENT_DIR/ssh_config
readonly PACKAGES=(openssh-server openssh-client)
# Debian's sshd refuses to start without its privilege-separation directory; the
# package's init script creates it at boot, which a container never runs.
readonly PRIVSEP_DIR=/run/sshd
# shellcheck source=scripts/lib/dev-daemons.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/dev-daemons.sh"
# The system runs an sshd too: ours is the one started with our config.
DAEMON_CMDLINE["sshd"]="$SSHD -D -f $SSHD_CONFIG "

dump_logs() { tail_logs "$STATE_DIR/sshd.out" "$LOG_FILE"; }

validate_knobs() {
  if ! [[ $PORT =~ ^[0-9]+$ ]] || (( PORT <= 1024 || PORT > 65535 )); then
    log "ERROR: SSHD_DEV_PORT must be a port above 1024, got '$PORT'"
    exit 2
  fi
  [[ $TIMEOUT =~ ^[0-9]+$ ]] \
    || { log "ERROR: SSHD_DEV_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"; exit 2; }
}

# The per-connection sshd processes of our listener (they outlive it on SIGTERM).
session_pids() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true; }

start_sshd() {
  # -D: stay in the foreground (our pid is the daemon); -E: log to our file, not syslog.
  start_daemon sshd "$SSHD" -D -f "$SSHD_CONFIG" -E "$LOG_FILE"
  log "sshd listens on 127.0.0.1:$PORT"
}

stop_sshd() {
  local child
  # Sessions first: a client's ControlMaster connection would otherwise live on.
  if ours sshd; then
    for child in $(session_pids "$(our_pid sshd)"); do kill -TERM "$child" 2>/dev/null || true; done
  fi
  stop_daemon sshd 10
}

login_works() {
  [[ -f $CLIENT_CONFIG ]] || return 1
  [[ $(ssh -F "$CLIENT_CONFIG" -o ConnectTimeout=5 capi-dev id -un 2>/dev/null) == "$REMOTE_USER" ]]
}

# ------------------------------------------------------------------ up: install
install_packages() {
  local missing own_policy=0
  mapfile -t missing < <(missing_packages)
  (( ${#missing[@]} )) || return 0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # Exit 101 = "action forbidden": the package's postinst does not start the system sshd.
    printf '#!/bin/sh
# Temporary, from %s: do not start services while installing.
exit 101
' \
      "$PROG" >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_install "${missing[@]}"
  if (( own_policy )); then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
}

# ------------------------------------------------------------------ up: configure
ensure_user() {
  if ! id "$REMOTE_USER" >/dev/null 2>&1; then
    useradd --create-home --user-group --shell /bin/bash --comment "cluster_api remote tests" \
      "$REMOTE_USER"
    log "created user $REMOTE_USER"
  fi
  # useradd leaves the password '!' (locked), and with UsePAM no sshd refuses a locked
  # account even for a key.  '*' matches no password, so the key stays the only way in.
  if [[ $(getent shadow "$REMOTE_USER" | cut -d: -f2) != '*' ]]; then
    usermod -p '*' "$REMOTE_USER"
  fi
}

ensure_keys() {
  mkdir -p "$STATE_DIR/host" "$CLIENT_DIR"
  chmod 0700 "$STATE_DIR/host"
  chmod 0755 "$CLIENT_DIR"
  [[ -s $HOST_KEY ]] || ssh-keygen -q -t ed25519 -N '' -C "capi-dev host key" -f "$HOST_KEY"
  [[ -s $CLIENT_KEY ]] || ssh-keygen -q -t ed25519 -N '' -C "capi-dev test client" -f "$CLIENT_KEY"
  chmod 0600 "$CLIENT_KEY"

  local home
  home=$(getent passwd "$REMOTE_USER" | cut -d: -f6)
  [[ -d $home ]] || die "home of $REMOTE_USER ($home) does not exist"
  install -d -m 0700 -o "$REMOTE_USER" -g "$REMOTE_USER" "$home/.ssh"
  install -m 0600 -o "$REMOTE_USER" -g "$REMOTE_USER" "$CLIENT_KEY.pub" "$home/.ssh/authorized_keys"

  # Written every time: the port may have changed.  Port 22 would be keyed "127.0.0.1".
  printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1,2 "$HOST_KEY.pub")" >"$KNOWN_HOSTS"
  chmod 0644 "$KNOWN_HOSTS"
}

render_sshd_config() {
  cat <<EOF
# Generated by scripts/sshd-dev.sh; rewritten on every \`up\`.  Not the system's sshd.
Port $PORT
ListenAddress 127.0.0.1
HostKey $HOST_KEY
PidFile $PID_FILE
LogLevel VERBOSE

# Key-only login, for the test user only.
AllowUsers $REMOTE_USER
PermitRootLogin no
AuthenticationMethods publickey
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes

# As on a typical login node: up to 10 sessions share one (multiplexed) connection.
MaxSessions 10
# ProxyJump capi-dev opens a direct-tcpip channel, to this server only.
AllowTcpForwarding local
PermitOpen 127.0.0.1:$PORT
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
EOF
}

render_client_config() {
  cat <<EOF
# Generated by scripts/sshd-dev.sh: use with \`ssh -F $CLIENT_CONFIG capi-dev ...\`.
# -F means ~/.ssh/config is not read; nothing here prompts (BatchMode yes).
Host capi-dev capi-dev-jump
  HostName 127.0.0.1
  Port $PORT
  User $REMOTE_USER
  IdentityFile $CLIENT_KEY
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile $KNOWN_HOSTS
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10

# The same server through a jump host (itself), as at sites behind a bastion.
Host capi-dev-jump
  ProxyJump capi-dev
EOF
}

# write_if_changed FILE MODE CONTENT: return 0 if FILE was (re)written.
write_if_changed() {
  local file=$1 mode=$2 content=$3
  if [[ -f $file && $(<"$file") == "$content" ]]; then return 1; fi
  printf '%s\n' "$content" >"$file"
  chmod "$mode" "$file"
}

# ------------------------------------------------------------------ subcommands
cmd_up() {
  require_root "installs packages, adds a user"
  validate_knobs
  take_lock
  local t0 changed=1
  t0=$(now)

  if ours sshd && [[ -f $SSHD_CONFIG && $(<"$SSHD_CONFIG") == "$(render_sshd_config)" ]] && login_works; then
    log "already up (pid $(our_pid sshd), 127.0.0.1:$PORT); nothing to do"
    print_paths
    return 0
  fi

  install_packages
  ensure_user
  ensure_keys
  write_if_changed "$CLIENT_CONFIG" 0644 "$(render_client_config)" || true
  write_if_changed "$SSHD_CONFIG" 0644 "$(render_sshd_config)" && changed=0
  mkdir -p "$PRIVSEP_DIR"
  chmod 0755 "$PRIVSEP_DIR"
  "$SSHD" -t -f "$SSHD_CONFIG" 2>"$STATE_DIR/sshd.out" || die "sshd -t rejects $SSHD_CONFIG"

  if ours sshd && (( changed == 0 )); then
    log "sshd_config changed: restarting our sshd"
    stop_sshd
  fi
  ours sshd || start_sshd

  local deadline=$(( $(date +%s) + TIMEOUT ))
  until login_works; do
    ours sshd || die "sshd died while starting"
    (( $(date +%s) < deadline )) || die "no login as $REMOTE_USER after ${TIMEOUT}s"
    sleep 0.2
  done
  log "up in $(elapsed_since "$t0")s: ssh -F $CLIENT_CONFIG capi-dev runs as $REMOTE_USER"
  print_paths
}

print_paths() {
  cat <<EOF
client config: $CLIENT_CONFIG   (hosts capi-dev, capi-dev-jump)
client key:    $CLIENT_KEY
known_hosts:   $KNOWN_HOSTS
sshd log:      $LOG_FILE
sshd config:   $SSHD_CONFIG
EOF
}

cmd_down() {
  require_root "installs packages, adds a user"
  if [[ ! -d $STATE_DIR ]]; then
    log "nothing to stop ($STATE_DIR does not exist)"
    return 0
  fi
  take_lock
  stop_sshd
  log "down"
}

cmd_status() {
  if ! ours sshd; then
    echo "sshd-dev: not running"
    return 1
  fi
  if ! login_works; then
    echo "sshd-dev: pid $(our_pid sshd) on 127.0.0.1:$PORT, but no login as $REMOTE_USER"
    return 1
  fi
  echo "sshd-dev: pid $(our_pid sshd) on 127.0.0.1:$PORT, login as $REMOTE_USER works"
  echo "client config: $CLIENT_CONFIG"
}

dev_main "$@"
