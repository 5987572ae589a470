//! `bm2 init simple` / `bm2 ecosystem simple`: PM2's simple template (one app, `name` and
//! `script`), in any of the formats bm2 reads.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use bm2_config::sample::SampleFormat;

use crate::render;

/// PM2's `lib/templates/ecosystem-simple.tpl`, as PM2 writes it.
const JS: &str = "module.exports = {
  apps : [{
    name   : \"app1\",
    script : \"./app.js\"
  }]
}
";

const TS: &str = "export default {
  apps: [{
    name: \"app1\",
    script: \"./app.js\",
  }],
};
";

const JSON: &str = "{
  \"apps\": [{
    \"name\": \"app1\",
    \"script\": \"./app.js\"
  }]
}
";

const YAML: &str = "apps:
  - name: app1
    script: ./app.js
";

const TOML: &str = "[[apps]]
name = \"app1\"
script = \"./app.js\"
";

/// The simple template in `format`.
pub fn text(format: SampleFormat) -> &'static str {
    match format {
        SampleFormat::Js => JS,
        SampleFormat::Ts => TS,
        SampleFormat::Json => JSON,
        SampleFormat::Yaml => YAML,
        SampleFormat::Toml => TOML,
    }
}

/// Writes the simple template under the format's usual file name in the current directory;
/// an existing file is kept unless `force` (PM2 overwrites it silently).
pub fn write(format: SampleFormat, force: bool) -> anyhow::Result<ExitCode> {
    let path = Path::new(format.file_name());
    if path.exists() && !force {
        bail!(
            "{} already exists; use --force to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, text(format))?;
    render::info(&format!(
        "wrote {}; start it with `bm2 start {}`",
        path.display(),
        path.display()
    ));
    Ok(ExitCode::SUCCESS)
}
