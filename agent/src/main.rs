//! `swarm-agent`: the node agent binary.

fn main() -> std::process::ExitCode {
    eprintln!(
        "swarm-agent: the node agent is not available in this build yet; it is tracked in issue #4"
    );
    std::process::ExitCode::from(2)
}
