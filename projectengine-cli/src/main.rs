//! `projectengine`: the command-line client of a projectEngine server.

use std::process::ExitCode;

use clap::Parser;
use projectengine_cli::{Cli, CliError, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("projectengine: cannot start the runtime: {e}");
            return Exit::Error.into();
        }
    };
    match runtime.block_on(projectengine_cli::run(cli)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            report(&e, json);
            e.exit().into()
        }
    }
}

/// Shows an error on stderr: the server's message as it sent it, or JSON.
fn report(e: &CliError, json: bool) {
    if json {
        eprintln!("{}", e.to_json());
        return;
    }
    eprintln!("projectengine: error: {e}");
    match e {
        CliError::Api { status: 401, .. } => eprintln!(
            "hint: pass --token or set PROJECTENGINE_TOKEN; `projectengine token --sub NAME` mints a development token"
        ),
        CliError::Api { status: 404, code, message, .. }
            if code == "not_found" && message.starts_with("route") =>
        {
            eprintln!("hint: the server does not serve this route; it may be older than this client")
        }
        _ => {}
    }
}
