//! `swarm validate -f FILE...`: loads stack files without contacting a server. Warnings go to
//! stderr; every error is printed; exit 0 when valid, 1 when not.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use swarm_api::stack;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Compose files or manifests; later files override earlier ones.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The stack's name [default: the first file's name without extension].
    #[arg(long)]
    pub stack: Option<String>,
}

/// Loads the files with variables from the process environment, as `docker stack deploy`.
pub fn load(
    files: &[PathBuf],
    stack: Option<&str>,
) -> Result<stack::LoadedStack, stack::LoadErrors> {
    let env = |name: &str| std::env::var(name).ok();
    stack::load_stack(files, stack, &env, &stack::RealFs)
}

/// Prints warnings, then errors, on stderr.
pub fn print_problems(warnings: &[stack::Warning], errors: &[stack::LoadError]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for e in errors {
        eprintln!("error: {e}");
    }
}

pub fn run(args: ValidateArgs) -> ExitCode {
    match load(&args.files, args.stack.as_deref()) {
        Ok(loaded) => {
            print_problems(&loaded.warnings, &[]);
            println!(
                "valid: stack {:?} with {} object{}",
                loaded.name,
                loaded.objects.len(),
                if loaded.objects.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_problems(&e.warnings, &e.errors);
            let n = e.errors.len();
            eprintln!(
                "invalid: {n} error{}; fix them and run `swarm validate` again",
                if n == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}
