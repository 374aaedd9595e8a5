//! Property tests for the SASL and SCRAM parsers.
