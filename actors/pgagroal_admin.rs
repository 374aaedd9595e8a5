//! `pgagroal-admin`: creates the master key (`master-key`) and manages the
//! encrypted users files (`user add|edit|del|ls`). The formats and checks live
//! in `pgagroal::vault`; this file gathers the answers (options, the
//! environment, the terminal) and prints the result in the management
//! envelope, as text or JSON.

mod prompt;

use clap::{ArgAction, Parser};
use pgagroal::mgmt::{self, Command, Output, render};
use pgagroal::vault::master_key::{self, home_dir};
use pgagroal::vault::secret::generate_password;
use pgagroal::vault::users_file::validate_user_name;
use pgagroal::vault::{self, MasterKey, Password, UsersFile, VaultError};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value, json};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const DEFAULT_USERS_FILE: &str = "/etc/pgagroal/pgagroal_users.conf";

#[derive(Parser, Debug)]
#[command(
    name = "pgagroal-admin",
    about = "Administration utility for pgagroal",
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = "Commands:
  master-key              Create the master key (~/.pgagroal/master.key)
  user add                Add a user
  user edit               Change the password of a user
  user del                Remove a user
  user ls                 List the users

Environment:
  PGAGROAL_PASSWORD       The master key or user password, when -P is not given
  PGAGROAL_ALLOW_ROOT=1   Allow running as root (for testing only)"
)]
struct Args {
    /// Set the path to a user file
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = DEFAULT_USERS_FILE)]
    file: PathBuf,
    /// Set the user name
    #[arg(short = 'U', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Set the password for the user (or the master key)
    #[arg(short = 'P', long = "password", value_name = "PASSWORD")]
    password: Option<String>,
    /// Generate a password
    #[arg(short = 'g', long = "generate")]
    generate: bool,
    /// Length of a generated password (1 to 1024, default 64)
    #[arg(short = 'l', long = "length", value_name = "LENGTH")]
    length: Option<String>,
    /// Set the output format: text or json
    #[arg(short = 'F', long = "format", value_name = "text|json", default_value = "text")]
    format: String,
    /// Display version information
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Display help
    #[arg(short = '?', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// The command
    command: Vec<String>,
}

/// Where a password (or the master key) comes from, in pgagroal's order:
/// `-P`, then `-g`, then `PGAGROAL_PASSWORD`, then the terminal.
enum Source {
    Given(String),
    Generate(usize),
    Ask,
}

fn source(flag: Option<String>, generate: bool, length: usize, env: Option<OsString>) -> Result<Source, String> {
    if let Some(password) = flag {
        return Ok(Source::Given(password));
    }
    if generate {
        return Ok(Source::Generate(length));
    }
    match env.map(OsString::into_string) {
        Some(Ok(password)) => Ok(Source::Given(password)),
        Some(Err(_)) => Err("PGAGROAL_PASSWORD is not valid UTF-8".into()),
        None => Ok(Source::Ask),
    }
}

const NO_TERMINAL: &str = "standard input is not a terminal, so it cannot be asked for";

/// What a command produced.
struct Done {
    /// Lines printed before the document in text mode.
    before: Vec<String>,
    /// Lines printed after the document in text mode (standard error in JSON mode).
    after: Vec<String>,
    response: Option<Map<String, Value>>,
}

struct Context {
    args: Args,
    length: usize,
    rng: SystemRandom,
}

impl Context {
    fn user_name(&self) -> Result<String, String> {
        let name = match &self.args.user {
            Some(name) => name.clone(),
            None if prompt::interactive() => prompt::line("User name: ", vault::MAX_USER_NAME_BYTES)?,
            None => return Err(format!("no user name: give -U USER ({NO_TERMINAL})")),
        };
        validate_user_name(&name).map_err(|e| e.to_string())?;
        Ok(name)
    }

    fn source(&self) -> Result<Source, String> {
        source(self.args.password.clone(), self.args.generate, self.length, std::env::var_os("PGAGROAL_PASSWORD"))
    }

    /// A user's password, and whether it was generated.
    fn user_password(&self) -> Result<(Password, bool), String> {
        let check = |text: String| -> Result<Password, String> {
            if text.is_empty() {
                return Err("invalid password: it is empty".into());
            }
            Password::new(text).map_err(|e| e.to_string())
        };
        match self.source()? {
            Source::Given(text) => Ok((check(text)?, false)),
            Source::Generate(length) => Ok((generate_password(length, &self.rng).map_err(|e| e.to_string())?, true)),
            Source::Ask if !prompt::interactive() => {
                Err(format!("no password: give -P PASSWORD, set PGAGROAL_PASSWORD or use -g ({NO_TERMINAL})"))
            }
            Source::Ask => {
                for _ in 0..3 {
                    let first = match prompt::hidden("Password : ", vault::MAX_PASSWORD_BYTES).and_then(check) {
                        Ok(p) => p,
                        Err(e) => {
                            eprintln!("{e}");
                            continue;
                        }
                    };
                    let second = prompt::hidden("Verify   : ", vault::MAX_PASSWORD_BYTES)?;
                    if first.as_str() == second {
                        return Ok((first, false));
                    }
                    eprintln!("Passwords do not match");
                }
                Err("no password was agreed on".into())
            }
        }
    }

    /// The master key passphrase.
    fn passphrase(&self) -> Result<Password, String> {
        let check = |text: String| -> Result<Password, String> {
            master_key::validate_passphrase(&text).map_err(|e| e.to_string())?;
            Password::new(text).map_err(|e| e.to_string())
        };
        match self.source()? {
            Source::Given(text) => check(text),
            Source::Generate(length) => {
                check(generate_password(length, &self.rng).map_err(|e| e.to_string())?.as_str().into())
            }
            Source::Ask if !prompt::interactive() => {
                Err(format!("no master key: give -P KEY, set PGAGROAL_PASSWORD or use -g ({NO_TERMINAL})"))
            }
            Source::Ask => {
                for _ in 0..3 {
                    match prompt::hidden("Master key (will not echo): ", vault::MAX_PASSWORD_BYTES).and_then(check) {
                        Ok(p) => return Ok(p),
                        Err(e) => eprintln!("{e}"),
                    }
                }
                Err("no valid master key was given".into())
            }
        }
    }

    fn master_key(&self) -> Result<Done, String> {
        let home = home_dir().map_err(|e| e.to_string())?;
        // Refuse before asking for anything.
        let dir = master_key::key_dir(&home);
        if dir.exists() {
            vault::files::check_key_dir(&dir).map_err(|e| e.to_string())?;
        }
        let path = master_key::key_path(&home);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(VaultError::KeyExists { path }.to_string());
        }
        let passphrase = self.passphrase()?;
        let mut salt = [0u8; vault::cipher::SALT_LEN];
        self.rng.fill(&mut salt).map_err(|_| VaultError::Random.to_string())?;
        let path = master_key::create_key_file(&home, passphrase.as_str(), &salt).map_err(|e| e.to_string())?;
        Ok(Done { before: vec![], after: vec![format!("Master Key stored into {}", path.display())], response: None })
    }

    fn users_response(file: &UsersFile, generated: Option<&Password>) -> Option<Map<String, Value>> {
        let mut response = Map::new();
        response.insert("Users".into(), json!(file.names()));
        if let Some(password) = generated {
            response.insert("Password".into(), json!(password.as_str()));
        }
        Some(response)
    }

    /// The contents of `master.key`: read (and its permissions checked) early,
    /// the slow derivation done only once the command is known to proceed.
    fn key_file() -> Result<master_key::MasterKeyFile, String> {
        master_key::read_key_file(&home_dir().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    }

    /// Derive the master key and check that every entry but `except` opens with it.
    fn key_for(
        key_file: &master_key::MasterKeyFile,
        file: &UsersFile,
        except: Option<&str>,
    ) -> Result<MasterKey, String> {
        let key = key_file.derive();
        for entry in file.entries().filter(|e| Some(e.user) != except) {
            key.open_base64(entry.blob).map_err(|problem| {
                let e = VaultError::Entry {
                    path: file.path().to_path_buf(),
                    line: entry.line,
                    user: entry.user.into(),
                    problem,
                };
                format!("{e}; every entry of a file must use the same master key")
            })?;
        }
        Ok(key)
    }

    fn add(&self) -> Result<Done, String> {
        let mut file = UsersFile::read_or_empty(&self.args.file).map_err(|e| e.to_string())?;
        let key_file = Self::key_file()?;
        let user = self.user_name()?;
        if let Some(existing) = file.find(&user) {
            let e = VaultError::UserExists { path: file.path().into(), user: user.clone(), line: existing.line };
            return Err(e.to_string());
        }
        if file.len() >= vault::MAX_USERS {
            return Err(VaultError::Full { path: file.path().into(), max: vault::MAX_USERS }.to_string());
        }
        let (password, generated) = self.user_password()?;
        let key = Self::key_for(&key_file, &file, None)?;
        let blob = key.seal_base64(&password, &self.rng).map_err(|e| e.to_string())?;
        file.add(&user, &blob, vault::MAX_USERS).map_err(|e| e.to_string())?;
        file.write().map_err(|e| e.to_string())?;
        self.user_done(&file, generated.then_some(&password))
    }

    fn edit(&self) -> Result<Done, String> {
        let mut file = UsersFile::read(&self.args.file).map_err(|e| e.to_string())?;
        let key_file = Self::key_file()?;
        let user = self.user_name()?;
        if file.find(&user).is_none() {
            return Err(VaultError::UserMissing { path: file.path().into(), user }.to_string());
        }
        let (password, generated) = self.user_password()?;
        let key = Self::key_for(&key_file, &file, Some(&user))?;
        let blob = key.seal_base64(&password, &self.rng).map_err(|e| e.to_string())?;
        file.replace(&user, &blob).map_err(|e| e.to_string())?;
        file.write().map_err(|e| e.to_string())?;
        self.user_done(&file, generated.then_some(&password))
    }

    fn user_done(&self, file: &UsersFile, generated: Option<&Password>) -> Result<Done, String> {
        let before = match (generated, self.output()) {
            (Some(password), Output::Text) => vec![format!("Password : {}", password.as_str())],
            _ => vec![],
        };
        let response = Self::users_response(file, generated.filter(|_| self.output() == Output::Json));
        Ok(Done { before, after: vec![], response })
    }

    fn del(&self) -> Result<Done, String> {
        let mut file = UsersFile::read(&self.args.file).map_err(|e| e.to_string())?;
        let user = self.user_name()?;
        file.remove(&user).map_err(|e| e.to_string())?;
        file.write().map_err(|e| e.to_string())?;
        Ok(Done { before: vec![], after: vec![], response: Self::users_response(&file, None) })
    }

    fn ls(&self) -> Result<Done, String> {
        let file = UsersFile::read(&self.args.file).map_err(|e| e.to_string())?;
        let before = file.names().into_iter().map(String::from).collect();
        Ok(Done { before, after: vec![], response: Self::users_response(&file, None) })
    }

    fn output(&self) -> Output {
        if self.args.format.eq_ignore_ascii_case("json") { Output::Json } else { Output::Text }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("pgagroal-admin: {message}");
    ExitCode::FAILURE
}

fn parse_command(words: &[String]) -> Result<Option<Command>, String> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(Some(match words.as_slice() {
        [] => return Ok(None),
        ["master-key"] => Command::MasterKey,
        ["user", "add"] => Command::AddUser,
        ["user", "edit"] => Command::UpdateUser,
        ["user", "del"] => Command::RemoveUser,
        ["user", "ls"] => Command::ListUsers,
        [old @ ("add-user" | "update-user" | "remove-user" | "list-users"), ..] => {
            let new = match *old {
                "add-user" => "user add",
                "update-user" => "user edit",
                "remove-user" => "user del",
                _ => "user ls",
            };
            return Err(format!("'{old}' was replaced by '{new}'"));
        }
        _ => return Err(format!("unknown command '{}'; try 'pgagroal-admin -?'", words.join(" "))),
    }))
}

fn print_document(command: Command, output: Output, outcome: Value, response: Option<Map<String, Value>>) {
    let mut document = Map::new();
    document.insert("Header".into(), mgmt::header(command, output));
    document.insert("Outcome".into(), outcome);
    if let Some(response) = response {
        document.insert("Response".into(), Value::Object(response));
    }
    let mut document = Value::Object(document);
    render::translate_header(&mut document);
    match output {
        Output::Json | Output::Raw => println!("{}", render::json(&document)),
        Output::Text => println!("{}", render::text(&document)),
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
    };
    if args.version {
        println!("pgagroal-admin {}", pgagroal::VERSION);
        return ExitCode::SUCCESS;
    }
    let output = match args.format.to_ascii_lowercase().as_str() {
        "text" => Output::Text,
        "json" => Output::Json,
        other => return fail(&format!("format '{other}' is not one of text, json")),
    };
    let length = match args.length.as_deref().map(str::parse::<usize>) {
        None => vault::DEFAULT_GENERATED_LENGTH,
        Some(Ok(n)) if (1..=vault::MAX_GENERATED_LENGTH).contains(&n) => n,
        Some(_) => {
            let given = args.length.as_deref().unwrap_or_default();
            return fail(&format!("invalid password length '{given}' (1 to {})", vault::MAX_GENERATED_LENGTH));
        }
    };
    if nix::unistd::getuid().is_root() && std::env::var_os("PGAGROAL_ALLOW_ROOT").is_none_or(|v| v != "1") {
        return fail("Using the root account is not allowed");
    }
    let command = match parse_command(&args.command) {
        Ok(Some(command)) => command,
        Ok(None) => {
            let mut help = <Args as clap::CommandFactory>::command();
            let _ = help.print_help();
            return ExitCode::FAILURE;
        }
        Err(e) => return fail(&e),
    };
    let started = Instant::now();
    let context = Context { args, length, rng: SystemRandom::new() };
    let result = match command {
        Command::MasterKey => context.master_key(),
        Command::AddUser => context.add(),
        Command::UpdateUser => context.edit(),
        Command::RemoveUser => context.del(),
        _ => context.ls(),
    };
    match result {
        Ok(done) => {
            if output == Output::Text {
                done.before.iter().for_each(|line| println!("{line}"));
            }
            print_document(command, output, mgmt::outcome_ok(started.elapsed().as_secs()), done.response);
            for line in &done.after {
                match output {
                    Output::Text => println!("{line}"),
                    _ => eprintln!("{line}"),
                }
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            print_document(command, output, mgmt::outcome_error(1), None);
            fail(&message)
        }
    }
}
