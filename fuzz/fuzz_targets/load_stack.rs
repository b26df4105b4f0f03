//! Feeds arbitrary bytes to the stack loader as a stack file (plus a second file for merges,
//! when the input holds a NUL), through the in-memory file system. The loader must never panic.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use swarm_api::stack::{MemFs, load_stack};

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let mut fs = MemFs::new()
        .with("/f/stack.yml", first.to_vec())
        .with("/f/app.env", b"A=1\n".to_vec())
        .with("/f/secret.txt", b"s3cret".to_vec());
    let mut files = vec![PathBuf::from("/f/stack.yml")];
    if let Some(second) = second {
        fs.insert("/f/override.yml", second.to_vec());
        files.push(PathBuf::from("/f/override.yml"));
    }
    let env = |name: &str| (name == "TAG").then(|| "1".to_string());
    let _ = load_stack(&files, None, &env, &fs);
});
