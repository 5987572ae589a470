//! The SMF manifest `bm2 startup smf` writes (after PM2's template), imported by `svccfg
//! import` and enabled by `svcadm enable`.
//!
//! A `contract` service, as PM2's: `start` runs `bm2 resurrect` (`bm2 ping` when nothing was
//! saved), which leaves the daemon running in the service's contract; `stop` runs `bm2 kill`
//! (apps stopped gracefully, the saved list kept); `refresh` runs `bm2 reload all`. The methods
//! run as the user, with `BM2_HOME` and `PATH` set.

use std::fmt::Write as _;

use super::Service;
use super::launchd::escape;
use super::shell::quote;

/// The marker line (an XML comment, as launchd's).
pub use super::launchd::MARKER;

/// Where site manifests live.
pub const MANIFEST_DIR: &str = "/var/svc/manifest/application";

/// An `exec` attribute: svc.startd runs it with `/bin/sh -c` after expanding `%` tokens.
fn exec(command: &str) -> String {
    escape(&command.replace('%', "%%"))
}

/// The manifest's text.
pub fn manifest(s: &Service) -> String {
    let bm2 = quote(&s.program.display().to_string());
    let home = quote(&s.home.display().to_string());
    let start =
        format!("if [ -f {home}/dump.json ]; then exec {bm2} resurrect; else exec {bm2} ping; fi");
    let start = format!("/bin/sh -c {}", quote(&start));
    let name = escape(&s.name);
    let mut m = String::new();
    let _ = writeln!(m, r#"<?xml version="1.0"?>"#);
    let _ = writeln!(
        m,
        r#"<!DOCTYPE service_bundle SYSTEM "/usr/share/lib/xml/dtd/service_bundle.dtd.1">"#
    );
    let _ = writeln!(m, "{MARKER}");
    let _ = writeln!(m, r#"<service_bundle type="manifest" name="{name}">"#);
    let _ = writeln!(
        m,
        r#"  <service name="application/{name}" type="service" version="1">"#
    );
    let _ = writeln!(m, r#"    <create_default_instance enabled="false"/>"#);
    let _ = writeln!(m, "    <single_instance/>");
    for (dep, fmri) in [
        ("network", "svc:/milestone/network:default"),
        ("filesystem", "svc:/system/filesystem/local"),
    ] {
        let _ = writeln!(
            m,
            r#"    <dependency name="{dep}" grouping="require_all" restart_on="error" type="service">
      <service_fmri value="{fmri}"/>
    </dependency>"#
        );
    }
    let _ = writeln!(m, "    <method_context>");
    let _ = writeln!(
        m,
        r#"      <method_credential user="{}" group=":default"/>"#,
        escape(&s.user)
    );
    let _ = writeln!(m, "      <method_environment>");
    let _ = writeln!(
        m,
        r#"        <envvar name="BM2_HOME" value="{}"/>"#,
        escape(&s.home.display().to_string())
    );
    let _ = writeln!(
        m,
        r#"        <envvar name="PATH" value="{}"/>"#,
        escape(&s.path)
    );
    let _ = writeln!(m, "      </method_environment>");
    let _ = writeln!(m, "    </method_context>");
    for (method, command) in [
        ("start", start),
        ("stop", format!("{bm2} kill")),
        ("refresh", format!("{bm2} reload all")),
    ] {
        let _ = writeln!(
            m,
            r#"    <exec_method type="method" name="{method}" exec="{}" timeout_seconds="120"/>"#,
            exec(&command)
        );
    }
    let _ = writeln!(
        m,
        r#"    <property_group name="startd" type="framework">
      <propval name="duration" type="astring" value="contract"/>
      <propval name="ignore_error" type="astring" value="core,signal"/>
    </property_group>
    <stability value="Evolving"/>
    <template>
      <common_name>
        <loctext xml:lang="C">bm2 process manager for {}</loctext>
      </common_name>
    </template>
  </service>
</service_bundle>"#,
        escape(&s.user)
    );
    m
}
