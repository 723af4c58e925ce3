//! Shell completions, generated from the command definitions. The checked-in copies in
//! `completions/` are compared with a fresh generation by a test.

use crate::cli::error::{CliError, CliResult};
use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

impl CompletionShell {
    pub const ALL: [CompletionShell; 4] = [
        CompletionShell::Bash,
        CompletionShell::Zsh,
        CompletionShell::Fish,
        CompletionShell::Powershell,
    ];

    fn shell(self) -> Shell {
        match self {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
            CompletionShell::Powershell => Shell::PowerShell,
        }
    }

    /// The file name under `completions/`.
    pub fn file_name(self) -> &'static str {
        match self {
            CompletionShell::Bash => "pbackend.bash",
            CompletionShell::Zsh => "_pbackend",
            CompletionShell::Fish => "pbackend.fish",
            CompletionShell::Powershell => "_pbackend.ps1",
        }
    }
}

pub fn generate(shell: CompletionShell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell.shell(), &mut cmd, "pbackend", &mut out);
    out
}

pub fn run(shell: CompletionShell) -> CliResult {
    use std::io::Write;
    std::io::stdout()
        .write_all(&generate(shell))
        .map_err(CliError::io("cannot write to stdout"))
}
