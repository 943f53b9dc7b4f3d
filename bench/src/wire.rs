//! The frontend half of the Postgres protocol, read from the wire: [`proxy`] relays a
//! connection and counts what passes, [`sql`] holds the statements it captured and
//! writes them back as SQL text.

pub mod proxy;
pub mod sql;
