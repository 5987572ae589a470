//! The init scripts of `bm2 startup systemv` (`/etc/init.d`, LSB headers for `update-rc.d` and
//! `chkconfig`) and `bm2 startup openrc` (`openrc-run`), after PM2's templates.
//!
//! `start` brings the saved list back (`bm2 resurrect`, which starts a daemon; `bm2 ping` when
//! nothing was saved), `stop` runs `bm2 kill` (which keeps the saved list), `status` reports
//! whether the daemon answers. bm2 runs by its absolute path as the service's user (through
//! `su` unless the script already runs as that user), with `BM2_HOME` and `PATH` set.

use std::fmt::Write as _;

use super::Service;

/// The marker line (a shell comment, as systemd's).
pub use super::systemd::MARKER;

/// A single-quoted shell word.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// How each system's `su` runs a shell command (`$1`) as `$BM2_USER`.
#[derive(Debug, Clone, Copy)]
enum Su {
    /// util-linux and busybox: `su -s /bin/sh -c CMD USER`.
    Linux,
    /// FreeBSD (as its rc.subr and PM2 do): `su -m USER -c CMD`, in the caller's shell.
    FreeBsd,
    /// OpenBSD (as its rc.subr's `rcexec`): `su -s /bin/sh USER -c CMD`.
    OpenBsd,
}

impl Su {
    fn function(self) -> &'static str {
        match self {
            Su::Linux => "bm2_su() {\n    su -s /bin/sh -c \"$1\" \"$BM2_USER\"\n}\n",
            Su::FreeBsd => "bm2_su() {\n    su -m \"$BM2_USER\" -c \"$1\"\n}\n",
            Su::OpenBsd => "bm2_su() {\n    su -s /bin/sh \"$BM2_USER\" -c \"$1\"\n}\n",
        }
    }
}

/// The variables and functions every script shares.
fn common(s: &Service, su: Su, out: &mut String) {
    let _ = writeln!(out, "BM2={}", quote(&s.program.display().to_string()));
    let _ = writeln!(out, "BM2_USER={}", quote(&s.user));
    let _ = writeln!(out, "BM2_HOME={}", quote(&s.home.display().to_string()));
    let _ = writeln!(out, "PATH={}", quote(&s.path));
    out.push_str(COMMON);
    out.push_str("\n# Runs a shell command as $BM2_USER.\n");
    out.push_str(su.function());
}

const COMMON: &str = r#"export BM2_HOME PATH

# A single-quoted shell word.
bm2_quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# Runs bm2 with these arguments as $BM2_USER.
bm2_as_user() {
    if [ "$(id -un)" = "$BM2_USER" ]; then
        "$BM2" "$@"
        return
    fi
    # `exec env …`: the same in sh and csh (FreeBSD's su may run root's csh).
    bm2_cmd="exec env BM2_HOME=$(bm2_quote "$BM2_HOME") PATH=$(bm2_quote "$PATH") $(bm2_quote "$BM2")"
    for bm2_arg in "$@"; do
        bm2_cmd="$bm2_cmd $(bm2_quote "$bm2_arg")"
    done
    bm2_su "$bm2_cmd"
}

# Whether the daemon runs (checked without starting one, as any bm2 command would).
bm2_running() {
    bm2_pid=$(cat "$BM2_HOME/daemon.pid" 2>/dev/null) || return 1
    [ -n "$bm2_pid" ] && kill -0 "$bm2_pid" 2>/dev/null
}

# Starts the daemon with the apps of `bm2 save`.
bm2_start() {
    if bm2_running; then
        echo "bm2 daemon already running (pid $bm2_pid)"
        return 0
    fi
    if [ -f "$BM2_HOME/dump.json" ]; then
        bm2_as_user resurrect
    else
        bm2_as_user ping
    fi
}

# Stops the apps gracefully and the daemon; the saved list is kept.
bm2_stop() {
    if ! bm2_running; then
        echo "bm2 daemon not running"
        return 0
    fi
    bm2_as_user kill
}

# 0 when the daemon answers, 3 (LSB: not running) otherwise.
bm2_status() {
    if bm2_running && bm2_as_user ping; then
        return 0
    fi
    echo "bm2 daemon not running"
    return 3
}

bm2_reload() {
    if ! bm2_running; then
        echo "bm2 daemon not running"
        return 7
    fi
    bm2_as_user reload all
}
"#;

/// The System V init script.
pub fn systemv(s: &Service) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(out, "### BEGIN INIT INFO");
    let _ = writeln!(out, "# Provides:          {}", s.name);
    let _ = writeln!(out, "# Required-Start:    $local_fs $remote_fs $network");
    let _ = writeln!(out, "# Required-Stop:     $local_fs $remote_fs $network");
    let _ = writeln!(out, "# Default-Start:     2 3 4 5");
    let _ = writeln!(out, "# Default-Stop:      0 1 6");
    let _ = writeln!(
        out,
        "# Short-Description: bm2 process manager for {}",
        s.user
    );
    let _ = writeln!(
        out,
        "# Description:       Starts the bm2 daemon and the apps of `bm2 save`."
    );
    let _ = writeln!(out, "### END INIT INFO");
    let _ = writeln!(out, "# chkconfig: 2345 90 10");
    let _ = writeln!(out, "# description: bm2 process manager for {}", s.user);
    let _ = writeln!(out);
    common(s, Su::Linux, &mut out);
    out.push_str(
        r#"
case "$1" in
    start)
        bm2_start
        ;;
    stop)
        bm2_stop
        ;;
    restart|force-reload)
        bm2_stop && bm2_start
        ;;
    reload)
        bm2_reload
        ;;
    status)
        bm2_status
        ;;
    *)
        echo "Usage: $0 {start|stop|restart|reload|force-reload|status}" >&2
        exit 2
        ;;
esac
"#,
    );
    out
}

/// The `OpenRC` service script.
pub fn openrc(s: &Service) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/sbin/openrc-run");
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(
        out,
        "description={}",
        quote(&format!("bm2 process manager for {}", s.user))
    );
    let _ = writeln!(out, "extra_started_commands=\"reload\"");
    let _ = writeln!(out);
    common(s, Su::Linux, &mut out);
    out.push_str(
        r#"
depend() {
    need net localmount
    after bootmisc
}

start() {
    ebegin "Starting bm2 for $BM2_USER"
    bm2_start
    eend $?
}

stop() {
    ebegin "Stopping bm2 for $BM2_USER"
    bm2_stop
    eend $?
}

status() {
    bm2_status
}

reload() {
    ebegin "Reloading the apps of bm2 for $BM2_USER"
    bm2_reload
    eend $?
}
"#,
    );
    out
}

/// The `FreeBSD` rc.d script (`/usr/local/etc/rc.d`, rc.subr's `run_rc_command`), enabled by
/// `NAME_enable=YES` in rc.conf.
pub fn rcd(s: &Service) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(out, "# PROVIDE: {}", s.name);
    let _ = writeln!(out, "# REQUIRE: LOGIN");
    let _ = writeln!(out, "# KEYWORD: shutdown");
    let _ = writeln!(out);
    let _ = writeln!(out, ". /etc/rc.subr");
    let _ = writeln!(out);
    let _ = writeln!(out, "name={}", quote(&s.name));
    let _ = writeln!(out, "rcvar={}", quote(&format!("{}_enable", s.name)));
    let _ = writeln!(out);
    common(s, Su::FreeBsd, &mut out);
    out.push_str(
        r#"
start_cmd="bm2_start"
stop_cmd="bm2_stop"
status_cmd="bm2_status"
reload_cmd="bm2_reload"
extra_commands="reload status"

load_rc_config "$name"
run_rc_command "$1"
"#,
    );
    out
}

/// The `OpenBSD` rc.d script (`/etc/rc.d`, rc.subr's `rc_cmd`), enabled by `rcctl enable`.
pub fn rcd_openbsd(s: &Service) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/ksh");
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(out);
    let _ = writeln!(out, "daemon={}", quote(&s.program.display().to_string()));
    let _ = writeln!(out, "daemon_user={}", quote(&s.user));
    let _ = writeln!(out);
    let _ = writeln!(out, ". /etc/rc.d/rc.subr");
    let _ = writeln!(out);
    common(s, Su::OpenBsd, &mut out);
    out.push_str(
        r#"
rc_start() {
    bm2_start
}

rc_check() {
    bm2_running
}

rc_stop() {
    bm2_stop
}

rc_reload() {
    bm2_reload
}

rc_cmd "$1"
"#,
    );
    out
}
