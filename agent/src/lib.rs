//! swarm's node agent: registers with the dispatcher, receives its tasks and runs them on a
//! container runtime (Docker, or a simulated one for scale tests).
