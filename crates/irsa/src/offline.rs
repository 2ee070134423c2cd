//! What a build without the `online` feature (the offline toolkit) leaves
//! out, and how it says so: one line naming the build that has it, exit 2.
//! Compiled only into that build.

/// The error for `what`, which needs the network code this build leaves out.
pub fn needs_online(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs the network code that this offline build of irsa leaves out; \
         use the full build: cargo install --path crates/irsa (or cargo run -p irsa -- ...)"
    )
}

// The arguments of a command this build lacks, taken whole so that the
// command explains itself instead of failing on its flags. (No doc comment:
// clap would show it as the command's description.)
#[derive(clap::Args)]
pub struct Unavailable {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

impl Unavailable {
    /// The error for `irsa <command>` in this build.
    pub fn run(self, command: &str) -> anyhow::Result<()> {
        let _ = self.args;
        Err(needs_online(&format!("`irsa {command}`")))
    }
}
