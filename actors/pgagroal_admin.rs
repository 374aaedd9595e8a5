//! `pgagroal-admin`: the master key and the users files.

fn main() {}
