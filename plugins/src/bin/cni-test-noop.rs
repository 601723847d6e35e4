//! cni-test-noop: a test double for runtime tests (upstream `plugins/test/noop`).
//!
//! It records every call and answers as its instructions say. Instructions are a JSON
//! file named by the config key `debugFile`, else by `DEBUG=<path>` in `CNI_ARGS`, else
//! by the environment variable `CNI_TEST_DEBUG`:
//!
//! ```json
//! {"reportResult": {...} | "PASSTHROUGH", "reportError": "msg", "reportErrorCode": 7,
//!  "reportStderr": "text", "exitWithCode": 3, "reportVersionSupport": ["0.4.0"],
//!  "commandLog": "/path/shared.log"}
//! ```
//!
//! Each call appends one JSON line to `<debug file>.log`, and to `commandLog` when
//! given (a log several plugins share, to see the order of calls):
//! `{"command","containerID","netns","ifname","args","path","stdin","debugFile"}`.

use std::io::{Read, Write};

use cni_skel::{Context, Plugin, Request};
use cni_types::Error;
use cni_types::result::{Result as CniResult, parse_prev_result};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Instructions {
    report_result: Option<Value>,
    report_error: String,
    report_error_code: Option<u32>,
    report_stderr: String,
    exit_with_code: Option<i32>,
    report_version_support: Option<Vec<String>>,
    command_log: Option<String>,
}

struct Noop {
    instructions: Instructions,
    versions: Vec<&'static str>,
}

impl Noop {
    fn fail_if_told(&self) -> Result<(), Error> {
        if self.instructions.report_error.is_empty() {
            return Ok(());
        }
        let code = self
            .instructions
            .report_error_code
            .unwrap_or(cni_types::code::INTERNAL);
        Err(Error::new(code, self.instructions.report_error.clone()))
    }
}

impl Plugin for Noop {
    type Conf = Value;

    fn name(&self) -> &str {
        "noop"
    }

    fn supported_versions(&self) -> &[&'static str] {
        &self.versions
    }

    fn add(&self, args: &Request<Value>, _cx: &Context) -> Result<CniResult, Error> {
        self.fail_if_told()?;
        match &self.instructions.report_result {
            Some(Value::String(s)) if s == "PASSTHROUGH" => {
                let conf: Value = serde_json::from_slice(&args.stdin)
                    .map_err(|e| Error::internal(e.to_string()))?;
                let prev = conf
                    .get("prevResult")
                    .cloned()
                    .ok_or_else(|| Error::internal("no prevResult"))?;
                parse_prev_result(&args.cni_version, prev).map_err(Error::internal)
            }
            Some(result) => {
                cni_skel::invoke::parse_result(result.to_string().as_bytes(), &args.cni_version)
            }
            None => cni_skel::invoke::parse_result(b"{}", "1.1.0"),
        }
    }

    fn del(&self, _args: &Request<Value>, _cx: &Context) -> Result<(), Error> {
        self.fail_if_told()
    }

    fn check(&self, _args: &Request<Value>, _cx: &Context) -> Result<(), Error> {
        self.fail_if_told()
    }

    fn status(&self, _args: &Request<Value>, _cx: &Context) -> Result<(), Error> {
        self.fail_if_told()
    }

    fn gc(&self, _args: &Request<Value>, _cx: &Context) -> Result<(), Error> {
        self.fail_if_told()
    }
}

fn debug_file(stdin: &[u8]) -> Option<String> {
    let from_config = serde_json::from_slice::<Value>(stdin).ok().and_then(|c| {
        c.get("debugFile")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let from_args = std::env::var("CNI_ARGS")
        .unwrap_or_default()
        .split(';')
        .find_map(|pair| pair.strip_prefix("DEBUG=").map(str::to_string));
    from_config
        .or(from_args)
        .or_else(|| std::env::var("CNI_TEST_DEBUG").ok())
        .filter(|p| !p.is_empty())
}

fn main() {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let debug = debug_file(&stdin);
    let instructions: Instructions = debug
        .as_ref()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();

    if let Some(path) = &debug {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        let record = json!({
            "command": var("CNI_COMMAND"),
            "containerID": var("CNI_CONTAINERID"),
            "netns": var("CNI_NETNS"),
            "ifname": var("CNI_IFNAME"),
            "args": var("CNI_ARGS"),
            "path": var("CNI_PATH"),
            "stdin": serde_json::from_slice::<Value>(&stdin).unwrap_or(Value::String(String::from_utf8_lossy(&stdin).into())),
            "debugFile": path,
        });
        let logs = [
            Some(format!("{path}.log")),
            instructions.command_log.clone(),
        ];
        for log in logs.iter().flatten() {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log);
            if let Ok(mut log) = log {
                // One write per record, so that concurrent calls never interleave.
                let _ = log.write_all(format!("{record}\n").as_bytes());
            }
        }
    }
    if !instructions.report_stderr.is_empty() {
        eprint!("{}", instructions.report_stderr);
    }
    if let Some(code) = instructions.exit_with_code {
        std::process::exit(code);
    }
    let versions = match &instructions.report_version_support {
        Some(v) => v
            .iter()
            .map(|s| &*Box::leak(s.clone().into_boxed_str()))
            .collect(),
        None => cni_types::version::ALL.to_vec(),
    };
    let plugin = Noop {
        instructions,
        versions,
    };
    let getenv = |name: &str| std::env::var(name).ok();
    let kernel = cni_net::Kernel::real();
    let cx = Context {
        kernel: &kernel,
        delegate: &cni_skel::Invoke::default(),
    };
    let status = cni_skel::run(
        &plugin,
        &cx,
        &getenv,
        &mut stdin.as_slice(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(status);
}
