//! Sample ecosystem files written by `bm2 ecosystem` (alias `init`).

/// The formats a sample can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// `ecosystem.config.js`
    Js,
    /// `ecosystem.config.ts`
    Ts,
    /// `ecosystem.json`
    Json,
    /// `ecosystem.yaml`
    Yaml,
    /// `ecosystem.toml`
    Toml,
}

impl SampleFormat {
    /// The conventional file name.
    pub fn file_name(self) -> &'static str {
        match self {
            SampleFormat::Js => "ecosystem.config.js",
            SampleFormat::Ts => "ecosystem.config.ts",
            SampleFormat::Json => "ecosystem.json",
            SampleFormat::Yaml => "ecosystem.yaml",
            SampleFormat::Toml => "ecosystem.toml",
        }
    }

    /// The sample's text.
    pub fn text(self) -> &'static str {
        match self {
            SampleFormat::Js => JS,
            SampleFormat::Ts => TS,
            SampleFormat::Json => JSON,
            SampleFormat::Yaml => YAML,
            SampleFormat::Toml => TOML,
        }
    }
}

const JS: &str = r#"// bm2 ecosystem file. Start everything with: bm2 start ecosystem.config.js
// Production variables: bm2 start ecosystem.config.js --env production
// Every option: `bm2 schema --markdown`, or docs/configuration.md.
module.exports = {
  apps: [
    {
      name: "api",
      script: "./server.js",        // relative to this file (or cwd)
      instances: 2,                 // a number, "max" (one per CPU) or -1 (CPUs minus one)
      max_memory_restart: "300M",   // restart when the process tree uses more memory
      env: {
        NODE_ENV: "development",
        PORT: 3000,
      },
      env_production: {
        NODE_ENV: "production",
      },
    },
    {
      name: "worker",
      script: "./worker.py",        // python3, by extension
      args: "--queue jobs",
      restart_delay: 1000,          // wait 1 s before restarting after a crash
      time: true,                   // timestamp each log line
    },
  ],
};
"#;

const TS: &str = r#"// bm2 ecosystem file. Start everything with: bm2 start ecosystem.config.ts
// (read with bun, or node 22.6+). Every option: `bm2 schema --markdown`.
interface App {
  name: string;
  script: string;
  instances?: number | "max";
  maxMemoryRestart?: string;
  env?: Record<string, string | number>;
  [key: string]: unknown;
}

const apps: App[] = [
  {
    name: "api",
    script: "./server.ts",
    instances: 2,
    maxMemoryRestart: "300M",
    env: { NODE_ENV: "development", PORT: 3000 },
    env_production: { NODE_ENV: "production" },
  },
];

export default { apps };
"#;

const JSON: &str = r#"{
  "apps": [
    {
      "name": "api",
      "script": "./server.js",
      "instances": 2,
      "max_memory_restart": "300M",
      "env": { "NODE_ENV": "development", "PORT": 3000 },
      "env_production": { "NODE_ENV": "production" }
    }
  ]
}
"#;

const YAML: &str = r"# bm2 ecosystem file. Start everything with: bm2 start ecosystem.yaml
apps:
  - name: api
    script: ./server.js
    instances: 2
    max_memory_restart: 300M
    env:
      NODE_ENV: development
      PORT: 3000
    env_production:
      NODE_ENV: production
";

const TOML: &str = r#"# bm2 ecosystem file. Start everything with: bm2 start ecosystem.toml
[[apps]]
name = "api"
script = "./server.js"
instances = 2
max_memory_restart = "300M"

[apps.env]
NODE_ENV = "development"
PORT = 3000

[apps.env_production]
NODE_ENV = "production"
"#;
