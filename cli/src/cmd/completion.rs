//! `swarm completion bash|zsh|fish`: shell completion scripts, generated from the command
//! definitions so they never drift from them.

use std::process::ExitCode;

use clap_complete::Shell;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  swarm completion bash > /etc/bash_completion.d/swarm
  swarm completion zsh > \"${fpath[1]}/_swarm\"
  swarm completion fish > ~/.config/fish/completions/swarm.fish")]
pub struct CompletionArgs {
    /// bash, zsh or fish (also elvish, powershell).
    pub shell: Shell,
}

/// Writes the script for `cmd` (the whole `swarm` command) to stdout.
pub fn run(args: CompletionArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "swarm", &mut buf);
    crate::output::emit(&String::from_utf8(buf)?)?;
    Ok(ExitCode::SUCCESS)
}
