//! `startup` and `unstartup`: a service that starts the daemon, and the saved apps, at boot.

mod files;
mod launchd;
mod shell;
mod smf;
mod systemd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bm2_types::{Home, Layout};

use crate::render;
use files::Existing;

/// Options of `startup` and `unstartup` (PM2's, plus `--dry-run`, `--force`, `--unit-dir`).
#[derive(Debug, clap::Args)]
pub struct StartupArgs {
    /// The init system (detected when omitted); for `startup`, first `install`, `uninstall`
    /// or `print` may come before it
    #[arg(value_name = "SYSTEM")]
    first: Option<String>,
    /// The init system, after `install`, `uninstall` or `print`
    #[arg(value_name = "SYSTEM", hide = true)]
    second: Option<String>,
    /// The user the daemon runs as (default: you)
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
    /// That user's home directory: the bm2 home is HOME/.bm2 (default: yours, or the user's)
    #[arg(long = "hp", value_name = "HOME")]
    hp: Option<PathBuf>,
    /// The service's name (default: bm2-USER)
    #[arg(long = "service-name", value_name = "NAME")]
    service_name: Option<String>,
    /// Print the service file and write nothing (as `startup print`)
    #[arg(long)]
    dry_run: bool,
    /// Replace a service file of the same name that bm2 did not write
    #[arg(long)]
    force: bool,
    /// Write (or remove) the service file in DIR instead of the init system's directory, and
    /// enable nothing: for packagers building an image, and for tests
    #[arg(long, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
}

/// The init systems PM2 knows, in its detection order, with the program that reveals each.
const INIT_SYSTEMS: [(&str, &str); 8] = [
    ("systemctl", "systemd"),
    ("update-rc.d", "upstart"),
    ("chkconfig", "systemv"),
    ("rc-update", "openrc"),
    ("launchctl", "launchd"),
    ("sysrc", "rcd"),
    ("rcctl", "rcd-openbsd"),
    ("svcadm", "smf"),
];

/// PM2's other names for the init systems.
const ALIASES: [(&str, &str); 10] = [
    ("ubuntu", "systemd"),
    ("centos", "systemd"),
    ("arch", "systemd"),
    ("oracle", "systemd"),
    ("ubuntu14", "upstart"),
    ("ubuntu12", "upstart"),
    ("darwin", "launchd"),
    ("macos", "launchd"),
    ("freebsd", "rcd"),
    ("gentoo", "openrc"),
];

/// One service to write or remove.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its name, without `.service`.
    pub name: String,
    /// The user the daemon runs as.
    pub user: String,
    /// The bm2 home the daemon uses.
    pub home: PathBuf,
    /// The bm2 binary, by its absolute, resolved path.
    pub program: PathBuf,
    /// bm2's or PM2's names (the program name the daemon is run under).
    pub layout: Layout,
    /// `PATH` for the daemon and the apps it starts.
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Install,
    Uninstall,
    Print,
}

/// `bm2 startup [install|uninstall|print] [SYSTEM]`.
pub fn startup(home: &Home, args: &StartupArgs) -> anyhow::Result<ExitCode> {
    let (action, system) = match args.first.as_deref() {
        Some("install") => (Action::Install, args.second.as_deref()),
        Some("uninstall") => (Action::Uninstall, args.second.as_deref()),
        Some("print") => (Action::Print, args.second.as_deref()),
        first => {
            if let Some(extra) = &args.second {
                bail!(
                    "unexpected argument `{extra}`: use `bm2 startup [install|uninstall|print] [SYSTEM]`"
                );
            }
            (Action::Install, first)
        }
    };
    run(home, args, action, system)
}

/// `bm2 unstartup [SYSTEM]`.
pub fn unstartup(home: &Home, args: &StartupArgs) -> anyhow::Result<ExitCode> {
    if let Some(extra) = &args.second {
        bail!("unexpected argument `{extra}`: use `bm2 unstartup [SYSTEM]`");
    }
    run(home, args, Action::Uninstall, args.first.as_deref())
}

/// The init systems `startup` writes files for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Systemd,
    Systemv,
    Openrc,
    Launchd,
    Upstart,
    Rcd,
    RcdOpenbsd,
    Smf,
}

impl System {
    fn of(name: &str) -> anyhow::Result<System> {
        Ok(match name {
            "systemd" => System::Systemd,
            "systemv" => System::Systemv,
            "openrc" => System::Openrc,
            "launchd" => System::Launchd,
            "upstart" => System::Upstart,
            "rcd" => System::Rcd,
            "rcd-openbsd" => System::RcdOpenbsd,
            "smf" => System::Smf,
            other => bail!("unknown init system `{other}`"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            System::Systemd => "systemd",
            System::Systemv => "systemv",
            System::Openrc => "openrc",
            System::Launchd => "launchd",
            System::Upstart => "upstart",
            System::Rcd => "rcd",
            System::RcdOpenbsd => "rcd-openbsd",
            System::Smf => "smf",
        }
    }

    /// The programs that reveal it (any one).
    fn programs(self) -> &'static [&'static str] {
        match self {
            System::Systemd => &["systemctl"],
            System::Systemv => &["chkconfig", "update-rc.d"],
            System::Openrc => &["rc-update"],
            System::Launchd => &["launchctl"],
            System::Upstart => &["update-rc.d"],
            System::Rcd => &["sysrc"],
            System::RcdOpenbsd => &["rcctl"],
            System::Smf => &["svccfg", "svcadm"],
        }
    }

    fn marker(self) -> &'static str {
        match self {
            System::Launchd => launchd::MARKER,
            System::Smf => smf::MARKER,
            _ => systemd::MARKER,
        }
    }

    /// Whether its programs are on `PATH` (smf needs both; the others any one).
    fn present(self) -> bool {
        let mut found = self.programs().iter().map(|p| which(p).is_some());
        if self == System::Smf {
            found.all(|f| f)
        } else {
            found.any(|f| f)
        }
    }

    /// Whether service names become shell variable names (rc.subr's `NAME_enable`).
    fn names_are_variables(self) -> bool {
        matches!(self, System::Rcd | System::RcdOpenbsd)
    }

    /// Whether writing the file in the init system's directory needs root.
    fn needs_root(self) -> bool {
        self != System::Launchd
    }

    fn text(self, s: &Service) -> String {
        match self {
            System::Systemd => systemd::unit(s),
            System::Systemv | System::Upstart => shell::systemv(s),
            System::Rcd => shell::rcd(s),
            System::RcdOpenbsd => shell::rcd_openbsd(s),
            System::Smf => smf::manifest(s),
            System::Openrc => shell::openrc(s),
            System::Launchd => launchd::plist(s, is_root()),
        }
    }

    /// Init scripts are programs.
    fn mode(self) -> u32 {
        match self {
            System::Systemv
            | System::Openrc
            | System::Upstart
            | System::Rcd
            | System::RcdOpenbsd => 0o755,
            System::Systemd | System::Launchd | System::Smf => 0o644,
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn run(
    home: &Home,
    args: &StartupArgs,
    action: Action,
    system: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let system = System::of(init_system(system)?)?;
    if !system.present() {
        bail!(
            "{} is not installed on this machine (no {} on PATH): nothing was written",
            system.name(),
            system.programs().join(if system == System::Smf {
                " or "
            } else {
                " nor "
            })
        );
    }
    if home.layout() == Layout::Pm2 && !matches!(system, System::Systemd | System::Launchd) {
        bail!(
            "invoked as pm2, startup writes systemd and launchd services only (a shell script cannot keep PM2's names): run it as bm2 (nothing was written)"
        );
    }
    let service = service(home, args, system)?;
    let dry_run = args.dry_run || action == Action::Print;
    if dry_run {
        if action == Action::Uninstall {
            render::info(&format!(
                "would remove {}",
                unit_path(args, &service, system)?.display()
            ));
        } else {
            print!("{}", system.text(&service));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.unit_dir.is_none() && system.needs_root() && !is_root() {
        return Ok(not_root(home.layout(), action, args, &service, system));
    }
    match action {
        Action::Install => install(args, &service, system),
        Action::Uninstall => uninstall(args, &service, system),
        Action::Print => unreachable!("printed above"),
    }
}

/// The named init system (PM2's aliases accepted), or the first PM2's order finds.
fn init_system(named: Option<&str>) -> anyhow::Result<&'static str> {
    if let Some(name) = named {
        return INIT_SYSTEMS
            .iter()
            .map(|(_, s)| *s)
            .chain(ALIASES.iter().filter(|(a, _)| *a == name).map(|(_, s)| *s))
            .find(|s| *s == name || ALIASES.contains(&(name, s)))
            .with_context(|| {
                let known: Vec<&str> = INIT_SYSTEMS.iter().map(|(_, s)| *s).collect();
                format!("unknown init system `{name}`: one of {}", known.join(", "))
            });
    }
    INIT_SYSTEMS
        .iter()
        .find(|(program, _)| which(program).is_some())
        .map(|(_, s)| *s)
        .context("cannot detect the init system (none of systemctl, update-rc.d, chkconfig, rc-update, launchctl, sysrc, rcctl, svcadm is on PATH); name it: bm2 startup systemd")
}

fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn service(home: &Home, args: &StartupArgs, system: System) -> anyhow::Result<Service> {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten();
    let user = match (&args.user, &me) {
        (Some(u), _) => u.clone(),
        (None, Some(me)) => me.name.clone(),
        (None, None) => std::env::var("USER").context("cannot tell who you are: pass --user")?,
    };
    let dir = format!(".{}", home.layout().program());
    let home_dir = if let Some(hp) = &args.hp {
        std::path::absolute(hp)?.join(dir)
    } else if me.as_ref().is_some_and(|m| m.name == user) {
        home.root().to_path_buf()
    } else {
        let other = nix::unistd::User::from_name(&user)
            .ok()
            .flatten()
            .with_context(|| format!("no user `{user}` on this machine"))?;
        other.dir.join(dir)
    };
    let name = match &args.service_name {
        Some(n) if system.names_are_variables() => variable_name(n)?,
        // An FMRI's `:` starts the instance name.
        Some(n) if system == System::Smf && n.contains([':', '@']) => {
            bail!("`{n}` is not an smf service name: letters, digits and - _ . only")
        }
        Some(n) => service_name(n)?,
        // rc.subr's names are shell variables: PM2's `pm2_USER`.
        None if system.names_are_variables() => variable_name(&format!(
            "{}_{}",
            home.layout().program(),
            user.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_")
        ))?,
        // PM2's launchd label is `pm2.USER`.
        None if system == System::Launchd => format!("{}.{user}", home.layout().program()),
        None => format!("{}-{user}", home.layout().program()),
    };
    let program = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot find the bm2 binary's path")?;
    Ok(Service {
        name,
        user,
        home: home_dir,
        path: service_path(&program),
        program,
        layout: home.layout(),
    })
}

fn service_name(name: &str) -> anyhow::Result<String> {
    let name = name.strip_suffix(".service").unwrap_or(name);
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    anyhow::ensure!(
        ok,
        "`{name}` is not a service name: letters, digits and - _ . : @ only"
    );
    Ok(name.to_string())
}

/// An rc.d service name: it names the shell variable `NAME_enable`.
fn variable_name(name: &str) -> anyhow::Result<String> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    anyhow::ensure!(
        ok,
        "`{name}` is not an rc.d service name: letters, digits and _ only (it names the variable {name}_enable)"
    );
    Ok(name.to_string())
}

/// This shell's `PATH` (brought by `sudo env PATH=$PATH`, so that the apps find their
/// interpreters as they do now), then the bm2 binary's directory and the system's.
fn service_path(program: &Path) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let shell = path
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(str::to_string);
    let bin = program.parent().map(|p| p.display().to_string());
    let mut dirs: Vec<String> = Vec::new();
    let system = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    for d in shell
        .chain(bin)
        .chain(system.iter().map(|s| (*s).to_string()))
    {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs.join(":")
}

fn unit_path(args: &StartupArgs, s: &Service, system: System) -> anyhow::Result<PathBuf> {
    let file = match system {
        System::Systemd => format!("{}.service", s.name),
        System::Systemv | System::Openrc | System::Upstart | System::Rcd | System::RcdOpenbsd => {
            s.name.clone()
        }
        System::Launchd => format!("{}.plist", s.name),
        System::Smf => format!("{}.xml", s.name),
    };
    let dir = match (&args.unit_dir, system) {
        (Some(dir), _) => dir.clone(),
        (None, System::Systemd) => PathBuf::from(systemd::UNIT_DIR),
        (None, System::Systemv | System::Openrc | System::Upstart) => PathBuf::from("/etc/init.d"),
        (None, System::Rcd) => PathBuf::from("/usr/local/etc/rc.d"),
        (None, System::RcdOpenbsd) => PathBuf::from("/etc/rc.d"),
        (None, System::Smf) => PathBuf::from(smf::MANIFEST_DIR),
        (None, System::Launchd) if is_root() => PathBuf::from(launchd::DAEMON_DIR),
        (None, System::Launchd) => {
            let home = args
                .hp
                .clone()
                .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
                .context("HOME is not set: pass --hp")?;
            home.join(launchd::AGENT_DIR)
        }
    };
    Ok(dir.join(file))
}

/// Not root: the one command to run, as PM2 prints it.
fn not_root(
    layout: Layout,
    action: Action,
    args: &StartupArgs,
    s: &Service,
    system: System,
) -> ExitCode {
    use std::fmt::Write as _;
    let (verb, command) = match action {
        Action::Uninstall => ("remove", "unstartup"),
        _ => ("setup", "startup"),
    };
    let command = format!("{command} {}", system.name());
    let program = match layout {
        Layout::Bm2 => s.program.display().to_string(),
        Layout::Pm2 => "pm2".to_string(),
    };
    let hp = args
        .hp
        .clone()
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    let mut line = format!("sudo env PATH=$PATH {program} {command} -u {}", s.user);
    if let Some(hp) = hp {
        let _ = write!(line, " --hp {}", hp.display());
    }
    if let Some(n) = &args.service_name {
        let _ = write!(line, " --service-name {n}");
    }
    render::info(&format!(
        "To {verb} the Startup Script, copy/paste the following command:"
    ));
    println!("{line}");
    render::error("you have to run this with elevated rights");
    ExitCode::FAILURE
}

fn install(args: &StartupArgs, s: &Service, system: System) -> anyhow::Result<ExitCode> {
    let path = unit_path(args, s, system)?;
    match files::existing(&path, system.marker())
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        Existing::Foreign if !args.force => bail!(
            "{} exists and was not written by bm2: nothing was changed (choose another --service-name, or replace it with --force)",
            path.display()
        ),
        _ => {}
    }
    if system == System::Launchd
        && args.unit_dir.is_none()
        && let Some(dir) = path.parent()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    files::write_atomic(&path, &system.text(s), system.mode())
        .with_context(|| format!("cannot write {}", path.display()))?;
    render::info(&format!("wrote {}", path.display()));
    if args.unit_dir.is_none() {
        for command in enable_commands(system, s, &path) {
            run_command(&command).with_context(|| {
                format!(
                    "{} was written but not enabled; run `{}`",
                    path.display(),
                    command.join(" ")
                )
            })?;
        }
        render::info(&format!("enabled {}: the daemon starts at boot", s.name));
        if system == System::Systemd && !systemd_running() {
            render::info(&format!(
                "warning: systemd is not running as PID 1 on this machine (no /run/systemd/system), so {} does not run now; it runs at the next boot under systemd",
                s.name
            ));
        }
    }
    let program = s.layout.program();
    render::info(&format!(
        "Freeze your process list for reboot with: {program} save"
    ));
    render::info(&format!(
        "Remove the startup script with: {program} unstartup {}",
        system.name()
    ));
    Ok(ExitCode::SUCCESS)
}

fn uninstall(args: &StartupArgs, s: &Service, system: System) -> anyhow::Result<ExitCode> {
    let path = unit_path(args, s, system)?;
    match files::existing(&path, system.marker())
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        Existing::None => {
            render::info(&format!("no {}: nothing to remove", path.display()));
            return Ok(ExitCode::SUCCESS);
        }
        Existing::Foreign => bail!(
            "{} was not written by bm2: it was left as it is",
            path.display()
        ),
        Existing::Ours => {}
    }
    if args.unit_dir.is_none() {
        for command in disable_commands(system, s, &path) {
            if let Err(e) = run_command(&command) {
                render::info(&format!("warning: {e:#}"));
            }
        }
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    render::info(&format!("removed {}", path.display()));
    Ok(ExitCode::SUCCESS)
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// The commands that enable the service at boot (PM2's).
fn enable_commands(system: System, s: &Service, path: &Path) -> Vec<Vec<String>> {
    let n = s.name.as_str();
    match system {
        System::Systemd => vec![strings(&["systemctl", "enable", n])],
        System::Systemv if which("chkconfig").is_some() => vec![
            strings(&["chkconfig", "--add", n]),
            strings(&["chkconfig", n, "on"]),
        ],
        System::Systemv | System::Upstart => vec![strings(&["update-rc.d", n, "defaults"])],
        System::Openrc => vec![strings(&["rc-update", "add", n, "default"])],
        System::Rcd => vec![strings(&["sysrc", &format!("{n}_enable=YES")])],
        System::RcdOpenbsd => vec![strings(&["rcctl", "enable", n])],
        System::Smf => vec![
            vec!["svccfg".into(), "import".into(), path.display().to_string()],
            strings(&["svcadm", "enable", &format!("application/{n}")]),
        ],
        System::Launchd => vec![vec![
            "launchctl".into(),
            "load".into(),
            "-w".into(),
            path.display().to_string(),
        ]],
    }
}

/// The commands that disable it (failures are warnings: the file is removed all the same).
fn disable_commands(system: System, s: &Service, path: &Path) -> Vec<Vec<String>> {
    let n = s.name.as_str();
    match system {
        System::Systemd => vec![strings(&["systemctl", "disable", n])],
        System::Systemv if which("chkconfig").is_some() => {
            vec![strings(&["chkconfig", "--del", n])]
        }
        System::Systemv | System::Upstart => vec![strings(&["update-rc.d", "-f", n, "remove"])],
        System::Openrc => vec![strings(&["rc-update", "del", n, "default"])],
        System::Rcd => vec![strings(&["sysrc", "-x", &format!("{n}_enable")])],
        System::RcdOpenbsd => vec![strings(&["rcctl", "disable", n])],
        System::Smf => vec![
            strings(&["svcadm", "disable", &format!("application/{n}")]),
            strings(&["svccfg", "delete", "-f", &format!("application/{n}")]),
        ],
        System::Launchd => vec![vec![
            "launchctl".into(),
            "unload".into(),
            "-w".into(),
            path.display().to_string(),
        ]],
    }
}

fn run_command(command: &[String]) -> anyhow::Result<()> {
    let out = std::process::Command::new(&command[0])
        .args(&command[1..])
        .output()
        .with_context(|| format!("cannot run {}", command[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            command.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// systemd's own test (`sd_booted`).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}
