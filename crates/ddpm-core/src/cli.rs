//! Command-line conventions shared by the binaries: argument errors are one line on stderr
//! and exit code 2 (`--help` and `--version` print as usual).

/// Parses the process arguments, or prints a one-line error and exits with code 2.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(v) => v,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("{}", one_line(&e.to_string()));
                std::process::exit(2);
            }
        },
    }
}

/// clap's multi-line message as one line: the error, then any "possible values" hint.
pub fn one_line(msg: &str) -> String {
    let mut parts: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect();
    parts.dedup();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn multi_line_messages_become_one() {
        let m = "error: invalid value 'x' for '--sampler <S>'\n  [possible values: ddpm, ddim]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::one_line(m),
            "error: invalid value 'x' for '--sampler <S>'; [possible values: ddpm, ddim]"
        );
    }
}
