//! The bus between nodes and, later, to other services (see the integration bus issue).
//!
//! Today it carries one thing: the cluster's doorbell. PostgreSQL's change log is the truth
//! every node applies; after a node commits a change it says so on NATS, and every other node's
//! tailer reads the change log at once instead of at its next poll. A lost or late message costs
//! latency (the poll still runs), never data. See `docs/decisions/0014-cluster-mode.md`.

pub mod nats;
