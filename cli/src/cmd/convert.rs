//! `swarm convert -f FILE... [--stack NAME] [-o yaml|json]`: prints the objects a stack file
//! becomes, without contacting a server. YAML is a multi-document stream; JSON an array.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::validate::{load, print_problems};

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Compose files or manifests; later files override earlier ones.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The stack's name [default: the first file's name without extension].
    #[arg(long)]
    pub stack: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

/// The objects rendered in `format`.
pub fn render(objects: &[swarm_api::AnyObject], format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(objects).context("encoding JSON")?;
            s.push('\n');
            s
        }
        Format::Yaml => {
            let mut out = String::new();
            for obj in objects {
                out.push_str("---\n");
                out.push_str(&serde_saphyr::to_string(obj).context("encoding YAML")?);
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            out
        }
    })
}

pub fn run(args: ConvertArgs) -> ExitCode {
    match load(&args.files, args.stack.as_deref()) {
        Ok(loaded) => {
            print_problems(&loaded.warnings, &[]);
            match render(&loaded.objects, args.output) {
                Ok(s) => {
                    print!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            print_problems(&e.warnings, &e.errors);
            ExitCode::FAILURE
        }
    }
}
