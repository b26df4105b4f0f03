//! `swarm schema --out DIR`: writes the JSON Schemas of the stack file and of every kind
//! (`stack.schema.json`, `service.schema.json`, …), as checked in under `schemas/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Directory to write the schema files into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

fn write_all(args: &SchemaArgs) -> anyhow::Result<usize> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let schemas = swarm_api::stack::all_schemas();
    for (name, content) in &schemas {
        let path = args.out.join(name);
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(schemas.len())
}

pub fn run(args: SchemaArgs) -> ExitCode {
    match write_all(&args) {
        Ok(n) => {
            println!("wrote {n} schemas to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
