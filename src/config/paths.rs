//! Where each configuration file is read from. Per-file flags (`-c`, `-a`,
//! ...) win over `-D DIR`, which wins over `PGAGROAL_CONFIG_DIR`; a file not
//! found in the chosen directory falls back to `/etc/pgagroal`. In a
//! directory, `pgagroal.toml` is used when `pgagroal.conf` is absent.

use std::path::{Path, PathBuf};

/// Upstream's default configuration directory.
pub const DEFAULT_DIR: &str = "/etc/pgagroal";

/// Paths given on the command line.
#[derive(Debug, Default, Clone)]
pub struct FileOverrides {
    pub dir: Option<PathBuf>,
    pub main: Option<PathBuf>,
    pub hba: Option<PathBuf>,
    pub limit: Option<PathBuf>,
    pub users: Option<PathBuf>,
    pub frontend_users: Option<PathBuf>,
    pub admins: Option<PathBuf>,
    pub superuser: Option<PathBuf>,
}

/// The resolved set of files; optional files are None when absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigFiles {
    pub main: PathBuf,
    pub hba: PathBuf,
    pub limit: Option<PathBuf>,
    pub users: Option<PathBuf>,
    pub frontend_users: Option<PathBuf>,
    pub admins: Option<PathBuf>,
    pub superuser: Option<PathBuf>,
}

impl FileOverrides {
    /// Resolve against `-D` or the environment's `PGAGROAL_CONFIG_DIR`.
    pub fn resolve(&self, env_dir: Option<PathBuf>) -> ConfigFiles {
        let dir = self.dir.clone().or(env_dir);
        let pick = |flag: &Option<PathBuf>, names: &[&str]| -> Option<PathBuf> {
            if let Some(path) = flag {
                return Some(path.clone());
            }
            let dirs = dir.iter().map(PathBuf::as_path).chain(std::iter::once(Path::new(DEFAULT_DIR)));
            for d in dirs {
                for name in names {
                    let candidate = d.join(name);
                    if candidate.exists() {
                        return Some(candidate);
                    }
                }
            }
            None
        };
        let main_default = dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)).join("pgagroal.conf");
        let hba_default = dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)).join("pgagroal_hba.conf");
        ConfigFiles {
            main: pick(&self.main, &["pgagroal.conf", "pgagroal.toml"]).unwrap_or(main_default),
            hba: pick(&self.hba, &["pgagroal_hba.conf"]).unwrap_or(hba_default),
            limit: pick(&self.limit, &["pgagroal_databases.conf"]),
            users: pick(&self.users, &["pgagroal_users.conf"]),
            frontend_users: pick(&self.frontend_users, &["pgagroal_frontend_users.conf"]),
            admins: pick(&self.admins, &["pgagroal_admins.conf"]),
            superuser: pick(&self.superuser, &["pgagroal_superuser.conf"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pgagroal.conf"), "").expect("write");
        std::fs::write(dir.path().join("pgagroal_hba.conf"), "").expect("write");
        let o = FileOverrides { dir: Some(dir.path().into()), ..Default::default() };
        let f = o.resolve(None);
        assert_eq!(f.main, dir.path().join("pgagroal.conf"));
        assert_eq!(f.hba, dir.path().join("pgagroal_hba.conf"));
        let o = FileOverrides { main: Some("/x/p.conf".into()), ..Default::default() };
        assert_eq!(o.resolve(Some(dir.path().into())).main, PathBuf::from("/x/p.conf"));
        // The environment directory is used when -D is absent.
        assert_eq!(FileOverrides::default().resolve(Some(dir.path().into())).hba, dir.path().join("pgagroal_hba.conf"));
    }

    #[test]
    fn toml_is_found_in_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pgagroal.toml"), "").expect("write");
        let o = FileOverrides { dir: Some(dir.path().into()), ..Default::default() };
        assert_eq!(o.resolve(None).main, dir.path().join("pgagroal.toml"));
    }
}
