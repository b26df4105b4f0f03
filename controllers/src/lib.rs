//! swarm's controllers, one module per controller, each a reconcile function over the shared
//! runtime in `swarm-client`.
