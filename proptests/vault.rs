//! Property tests for the vault: encrypt/decrypt round trips.
