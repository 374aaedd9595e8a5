//! The credential files: the master key (`~/.pgagroal/master.key`) and the
//! AES-256-GCM encrypted users files (`pgagroal_users.conf` and its kin), in
//! pgagroal 2.1's formats.
