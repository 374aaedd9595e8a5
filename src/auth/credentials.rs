//! The credentials the daemon serves clients with, read from the vault
//! files at start-up and on every reload: users (`-u`, the passwords the
//! pooler logs in to PostgreSQL with), frontend users (`-F`, the passwords
//! clients must give instead), admins (`-A`, remote management) and the
//! superuser (`-S`, for `auth_query`), plus the server secret that makes
//! mock SCRAM exchanges stable per user.

use super::policy::Known;
use super::scram::{DEFAULT_ITERATIONS, ScramSecret};
use crate::config::{ConfigFiles, MainConfig};
use crate::vault::{self, MasterKey, Password, Users};
use std::path::{Path, PathBuf};

/// Everything a worker needs to authenticate clients and log in.
#[derive(Clone, Default)]
pub struct Credentials {
    users: Users,
    frontend: Users,
    admins: Users,
    superuser: Option<(String, Password)>,
    auth_query: bool,
    /// SCRAM secrets of the users file's users, made from the password
    /// clients must give, once per load. Their salts come from the same
    /// derivation as mock secrets' ([`ScramSecret::mock`]), so a real user's
    /// exchange cannot be told from a mock one by its salt or its timing.
    scram: Vec<(String, ScramSecret)>,
    /// Random per daemon start; mock SCRAM salts are derived from it.
    mock_secret: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.names().collect::<Vec<_>>())
            .field("frontend", &self.frontend.names().collect::<Vec<_>>())
            .field("admins", &self.admins.names().collect::<Vec<_>>())
            .field("superuser", &self.superuser.as_ref().map(|(name, _)| name))
            .field("auth_query", &self.auth_query)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, key: &MasterKey, max: usize) -> Result<Users, String> {
    vault::load_users(path, key, max).map_err(|e| e.to_string())
}

impl Credentials {
    /// No vault files: every user is passed through (or refused).
    pub fn empty(mock_secret: [u8; 32]) -> Credentials {
        Credentials { mock_secret, ..Credentials::default() }
    }

    /// Read the vault files named in `files`, decrypting them with the
    /// master key under `home` (the daemon user's home directory), and check
    /// them against each other and against `main`. Returns warnings to log.
    pub fn load(
        files: &ConfigFiles,
        main: &MainConfig,
        home: Option<&Path>,
        mock_secret: [u8; 32],
    ) -> Result<(Credentials, Vec<String>), String> {
        let mut creds = Credentials::empty(mock_secret);
        creds.auth_query = main.auth_query;
        let mut warnings = Vec::new();
        let named: Vec<&PathBuf> =
            [&files.users, &files.frontend_users, &files.admins, &files.superuser].into_iter().flatten().collect();
        if named.is_empty() {
            if main.auth_query {
                return Err("auth_query = on needs the superuser file (-S pgagroal_superuser.conf)".into());
            }
            if !main.allow_unknown_users {
                warnings
                    .push("allow_unknown_users = off and no users file (-u): every client will be refused".to_string());
            }
            return Ok((creds, warnings));
        }
        let key = match home {
            Some(home) => MasterKey::load_from_home(home),
            None => MasterKey::load(),
        }
        .map_err(|e| format!("cannot read the master key needed by {}: {e}", named[0].display()))?;
        if let Some(path) = &files.users {
            creds.users = read(path, &key, vault::MAX_USERS)?;
        }
        if let Some(path) = &files.frontend_users {
            creds.frontend = read(path, &key, vault::MAX_USERS)?;
            for user in creds.frontend.entries() {
                if !creds.users.contains(&user.name) {
                    return Err(format!(
                        "{}: line {}: frontend user '{}' is not in the users file (-u); the pooler needs its \
                         server password too",
                        path.display(),
                        user.line,
                        user.name
                    ));
                }
            }
        }
        if let Some(path) = &files.admins {
            creds.admins = read(path, &key, vault::MAX_ADMINS)?;
        }
        if let Some(path) = &files.superuser {
            let users = read(path, &key, vault::MAX_SUPERUSERS)?;
            creds.superuser = users.iter().next().map(|(name, password)| (name.to_string(), password.clone()));
            if creds.superuser.is_none() {
                return Err(format!("{}: no superuser entry", path.display()));
            }
        }
        creds.scram = creds
            .users
            .names()
            .filter_map(|name| {
                let password = creds.client_password(name)?;
                let salt = ScramSecret::mock(name, &creds.mock_secret).salt.clone();
                Some((name.to_string(), ScramSecret::from_password(password.as_str(), &salt, DEFAULT_ITERATIONS)))
            })
            .collect();
        if main.auth_query {
            if creds.superuser.is_none() {
                return Err("auth_query = on needs the superuser file (-S pgagroal_superuser.conf)".into());
            }
            if !creds.users.is_empty() || !creds.frontend.is_empty() {
                return Err("auth_query = on cannot be combined with a users file (-u) or frontend users (-F)".into());
            }
        } else if creds.superuser.is_some() {
            warnings.push("a superuser file (-S) is only used with auth_query = on".to_string());
        }
        Ok((creds, warnings))
    }

    /// What the pooler holds for `user`.
    pub fn known(&self, user: &str) -> Known {
        if self.auth_query {
            Known::Query
        } else if self.users.contains(user) {
            Known::Vault
        } else {
            Known::Unknown
        }
    }

    /// The password a client must give: the frontend one, else the users file's.
    pub fn client_password(&self, user: &str) -> Option<&Password> {
        self.frontend.get(user).or_else(|| self.users.get(user))
    }

    /// The SCRAM secret a users-file user is checked against.
    pub fn scram_secret(&self, user: &str) -> Option<&ScramSecret> {
        self.scram.iter().find(|(name, _)| name == user).map(|(_, secret)| secret)
    }

    /// The users of the users file (`-u`).
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.names()
    }

    /// The password the pooler logs in to PostgreSQL with.
    pub fn server_password(&self, user: &str) -> Option<&Password> {
        self.users.get(user)
    }

    /// The `auth_query` superuser and its password.
    pub fn superuser(&self) -> Option<(&str, &Password)> {
        self.superuser.as_ref().map(|(name, password)| (name.as_str(), password))
    }

    /// Remote management users.
    pub fn admins(&self) -> &Users {
        &self.admins
    }

    /// The mock SCRAM secret shown for `user` when the pooler does not serve it.
    pub fn mock(&self, user: &str) -> ScramSecret {
        ScramSecret::mock(user, &self.mock_secret)
    }

    /// Keep the mock secret across a reload, so mock salts stay stable.
    pub fn mock_secret(&self) -> [u8; 32] {
        self.mock_secret
    }
}
