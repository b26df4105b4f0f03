//! `swarm-controller NAME`: runs one controller (or `all`) against an apiserver.

fn main() -> std::process::ExitCode {
    let name = std::env::args().nth(1).unwrap_or_default();
    eprintln!(
        "swarm-controller: controller {name:?} is not available in this build yet; \
         the controllers are tracked in issue #3"
    );
    std::process::ExitCode::from(2)
}
