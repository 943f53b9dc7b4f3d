//! What `bench`'s runs share with the end-to-end tests: [`wire`], a proxy that reads
//! what the gateway sends Postgres, so a run can count a request's statements and round
//! trips and a test can hold a read to its budget on the wire.

pub mod wire;
