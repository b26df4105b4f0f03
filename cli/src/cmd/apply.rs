//! `swarm apply -f FILE...`: loads Compose files and/or `swarm/v1` manifests as one stack and
//! applies it in one transaction, printing what happened to each object
//! (`service/voting_vote created|configured|unchanged|pruned`), then waits for the services it
//! created or changed to converge (`-d` does not wait).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use swarm_api::{AnyObject, stack};

use crate::cmd::stack::{baselines, wait_applied};
use crate::connect::{ConnectArgs, block_on};
use crate::converge::WaitArgs;
use crate::output;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Compose files or manifests; later files override earlier ones, as with `docker stack deploy`.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The stack's name [default: the first file's name without extension].
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
    /// Delete the stack's objects that the files no longer list.
    #[arg(long)]
    pub prune: bool,
    /// Show what would happen without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A stack as loaded from files.
pub struct Loaded {
    pub name: String,
    pub objects: Vec<AnyObject>,
}

/// Loads the files as one stack, printing the loader's warnings on stderr. Interpolation
/// variables come from the process environment, as with `docker stack deploy`.
pub fn load(files: &[PathBuf], stack: Option<&str>) -> anyhow::Result<Loaded> {
    let env = |key: &str| std::env::var(key).ok();
    match stack::load_stack(files, stack, &env, &stack::RealFs) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            Ok(Loaded {
                name: loaded.name,
                objects: loaded.objects,
            })
        }
        Err(e) => {
            for w in &e.warnings {
                eprintln!("warning: {w}");
            }
            let n = e.errors.len();
            let plural = if n == 1 { "" } else { "s" };
            let list: Vec<String> = e.errors.iter().map(|err| format!("  {err}")).collect();
            anyhow::bail!(
                "the stack files have {n} error{plural}:\n{}",
                list.join("\n")
            )
        }
    }
}

pub fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&args.files, args.stack.as_deref())?;
    let client = args.connect.client()?;
    block_on(async {
        let before = baselines(&client, &loaded.name).await?;
        let resp = client
            .apply_stack(&loaded.name, &loaded.objects, args.dry_run, args.prune)
            .await
            .with_context(|| format!("apply of stack {:?} refused", loaded.name))?;
        let suffix = if resp.dry_run { " (dry run)" } else { "" };
        let mut text = String::new();
        for r in &resp.results {
            text.push_str(&format!("{} {}{suffix}\n", r.reference(), r.action));
        }
        output::emit(&text)?;
        if resp.dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        wait_applied(&client, &resp, &before, &args.wait).await
    })?
}
